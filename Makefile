# Two entry points that do their own set-up on a fresh machine:
#   make run   - create .venv if needed, then `dvc repro`: prepare -> train -> evaluate -> traverse every
#                experiment in params.yaml, then select -> package the best generator
#   make test  - create .venv if needed, then the default (fast) test suite
#   make image - the service image from models/infogan-generator.bentomodel (IMAGE_VARIANT=cpu or cuda)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
IMAGE_VARIANT ?= cpu

# The venv's tools (dvc, python -m infogan inside dvc.yaml's cmds) come first; tools stay quiet.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup run test test-all bench clean image test-image

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The venv's bundled pip mis-resolves this stack: upgrade it first.
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(PY) -m infogan validate
	dvc repro

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

bench: $(STAMP)
	$(PY) bench/train_throughput.py --data ../shared/datasets/mnist --out bench/results/throughput.json

# docker when its daemon answers, else podman (set up by container/engine.sh); see docs/serving.md.
image:
	container/image.sh $(IMAGE_VARIANT)

# Builds the CPU image from a tiny model, runs it and compares it with the in-process service.
test-image: $(STAMP)
	$(PY) -m pytest -q -m container tests/test_container.py

clean:
	rm -rf runs data/prepared data/bench_prepared
