# syntax=docker/dockerfile:1
# The InfoGAN generation service with the packaged model baked in.
#
#   python -m infogan package        # or `dvc repro`: writes models/infogan-generator.bentomodel
#   make image                       # container/image.sh: docker or podman, CPU variant; see docs/serving.md
#   docker run --rm -p 3000:3000 infogan-service:cpu
#
# CPU by default (PyTorch's CPU wheel index). The CUDA variant takes PyPI's torch, a CUDA build that brings
# its CUDA libraries, so any base works; run it with `--gpus all`:
#   docker build --build-arg TORCH_INDEX_URL=https://pypi.org/simple -t infogan-service:cuda .
# A base without Python gets its distribution's.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- base: Python on the chosen base image -------------------------------------------------
FROM ${BASE_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# DL3008 (pin apt versions): runs only on bases without Python, whose distribution (and so its
# package versions) the BASE_IMAGE argument chooses; the base image's tag is the pin.
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ---- builder: a virtual environment and the model store --------------------------------------
FROM base AS builder
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.14.1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the index that decides CPU or CUDA (the version: pyproject.toml's pin), or from a
# wheel put in container/wheels/ (the folder is otherwise empty).
COPY container/wheels/ /tmp/wheels/
RUN pip install --index-url "${TORCH_INDEX_URL}" --find-links /tmp/wheels "torch==${TORCH_VERSION}"
COPY service/requirements.txt /tmp/service-requirements.txt
RUN pip install -r /tmp/service-requirements.txt
# The infogan package alone (its pipeline dependencies are not needed to serve), in its own folder so
# a code change leaves the venv's layer as it is.
COPY pyproject.toml README.md /src/
COPY src/ /src/src/
RUN pip install --no-deps --target /opt/infogan /src
# Bake the model in: the exported .bentomodel goes into the store the service reads.
ENV BENTOML_HOME=/opt/bentoml BENTOML_DO_NOT_TRACK=true
COPY models/infogan-generator.bentomodel /tmp/infogan-generator.bentomodel
RUN bentoml models import /tmp/infogan-generator.bentomodel && bentoml models list

# ---- runtime: no build tools, non-root --------------------------------------------------------
FROM base AS runtime
ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" app \
    && useradd --system --uid "${APP_UID}" --gid app --create-home --home-dir /home/app \
       --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/infogan /opt/infogan
# The code stays root-owned; the model store belongs to the service user (BentoML may write there).
COPY --from=builder --chown=${APP_UID}:${APP_UID} /opt/bentoml /home/app/bentoml
WORKDIR /app
COPY service/ /app/service/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/infogan \
    BENTOML_HOME=/home/app/bentoml \
    BENTOML_DO_NOT_TRACK=true \
    INFOGAN_MODEL_TAG=infogan-generator:latest
USER ${APP_UID}:${APP_UID}
EXPOSE 3000
# The service loads torch and the model first: allow a minute before failures count.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=4).status != 200)"]
CMD ["bentoml", "serve", "service.service:InfoGANGenerator", "--host", "0.0.0.0", "--port", "3000"]
