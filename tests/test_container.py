"""The service image in a real container (``make test-image``; not in the default run): built by
``container/image.sh`` from a tiny packaged model, run, and checked against the in-process service."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .conftest import ROOT, free_port, service_env

pytestmark = pytest.mark.container

IMAGE = os.environ.get("INFOGAN_TEST_IMAGE", "infogan-service:test")
BUILD_TIMEOUT_S = 2400  # a cold build (base image, torch, the service's packages) takes ~10 min here
READY_TIMEOUT_S = 180
# The same requests to the container and to the in-process service must give the same bytes.
REQUESTS = [("generate", {"n": 16, "seed": 0}),
            ("generate", {"n": 64, "seed": 12345, "codes": {"cat0": 3, "cont0": 0.5}}),
            ("traverse", {"code": "cat0", "format": "gif"})]
IN_PROCESS = """
import json, sys
from starlette.testclient import TestClient
from service.service import InfoGANGenerator
out = []
with TestClient(InfoGANGenerator.to_asgi()) as client:
    for endpoint, body in json.loads(sys.argv[1]):
        r = client.post("/" + endpoint, json=body)
        assert r.status_code == 200, r.text
        out.append(r.content.hex())
print(json.dumps(out))
"""


def engine(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(ROOT / "container" / "engine.sh"), *args], capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, f"engine {args}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc


def engine_name() -> str:
    return subprocess.run(["bash", "-c", '. container/engine.sh && echo "$ENGINE"'], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def image(packaged_model, tmp_path_factory):
    """The image, built by the same script as `make image` from a copy of the project holding the
    tiny model (the checkout's own models/ stays untouched); the layer cache makes rebuilds quick."""
    context = tmp_path_factory.mktemp("image_context")
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, context / name)
    for name in ("src", "service", "container"):
        shutil.copytree(ROOT / name, context / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "cache", "*.whl"))
    (context / "models").mkdir()
    shutil.copy(packaged_model["project"] / "models" / "infogan-generator.bentomodel", context / "models")
    env = {**os.environ, "IMAGE": IMAGE, "INFOGAN_CONTAINER_CACHE": str(ROOT / "container" / "cache")}
    start = time.monotonic()
    proc = subprocess.run([str(context / "container" / "image.sh"), "cpu"], cwd=context, env=env,
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    print(f"image {IMAGE} built in {time.monotonic() - start:.0f}s")
    return IMAGE


@pytest.fixture(scope="module")
def container(image):
    name, port = f"infogan-test-{os.getpid()}", free_port()
    engine("rm", "-f", name, check=False)
    engine("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:3000", image)
    url = f"http://127.0.0.1:{port}"
    try:
        start, ready = time.monotonic(), False
        while not ready and time.monotonic() - start < READY_TIMEOUT_S:
            try:
                ready = requests.get(f"{url}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                time.sleep(0.5)
        if not ready:
            logs = engine("logs", name, check=False)
            pytest.fail(f"container not ready after {READY_TIMEOUT_S}s:\n{(logs.stdout + logs.stderr)[-4000:]}")
        print(f"container ready {time.monotonic() - start:.1f}s after start")
        yield {"name": name, "url": url}
    finally:
        engine("rm", "-f", name, check=False)


def test_container_gives_the_bytes_of_the_in_process_service(container, packaged_model):
    proc = subprocess.run([sys.executable, "-c", IN_PROCESS, json.dumps(REQUESTS)], cwd=ROOT,
                          env=service_env(packaged_model["home"], INFOGAN_MODEL_TAG=packaged_model["tag"]),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = [bytes.fromhex(h) for h in json.loads(proc.stdout.strip().splitlines()[-1])]
    for (endpoint, body), want in zip(REQUESTS, expected):
        r = requests.post(f"{container['url']}/{endpoint}", json=body, timeout=60)
        assert r.status_code == 200, r.text
        assert r.content == want, f"/{endpoint} {body}: {len(r.content)} bytes differ from the in-process {len(want)}"


def test_info_names_the_baked_in_model(container, packaged_model):
    r = requests.post(f"{container['url']}/info", json={}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["model"]["tag"] == packaged_model["tag"]


def test_runs_as_non_root_with_a_passing_healthcheck(container):
    uid = engine("exec", container["name"], "id", "-u").stdout.strip()
    assert uid.isdigit() and int(uid) != 0, uid
    if engine_name() == "podman":
        engine("healthcheck", "run", container["name"])  # exit 0: the HEALTHCHECK command passed
        return
    deadline = time.monotonic() + 120  # docker runs the check itself, every 30 s
    status = ""
    while time.monotonic() < deadline and status != "healthy":
        status = engine("inspect", "--format", "{{.State.Health.Status}}", container["name"]).stdout.strip()
        time.sleep(2)
    assert status == "healthy"
