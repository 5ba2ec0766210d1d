"""The service's OpenAPI document tells the truth: schemathesis (every check) against the real
`bentoml serve` finds no 5xx, no valid request refused and no invalid one accepted."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests


def schemathesis(server, tmp_path: Path, examples: int, max_time_s: int) -> subprocess.CompletedProcess:
    st = Path(sys.executable).parent / "st"
    # cwd: schemathesis keeps a cache folder where it runs.
    return subprocess.run([str(st), "run", f"{server['url']}/docs.json", "--checks", "all", "--max-examples",
                           str(examples), "--max-time", str(max_time_s), "--seed", "1", "--no-color"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=max_time_s + 120)


def test_openapi_document_states_the_guard_and_the_model(server):
    doc = requests.get(f"{server['url']}/docs.json", timeout=30).json()
    info = requests.post(f"{server['url']}/info", timeout=30).json()  # no body at all stands for {}
    post = doc["paths"]["/generate"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["label"]["enum"] == [e["label"] for e in info["labels"]] + [None]
    codes = schema["properties"]["codes"]
    assert set(codes["properties"]) == {c["name"] for c in info["latent"]["codes"]} | set(info["roles"])
    assert codes["additionalProperties"] is False and codes["nullable"] is True
    assert {"400", "413", "415"} <= set(post["responses"])
    traverse = doc["paths"]["/traverse"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert traverse["properties"]["code"]["enum"] == [c["name"] for c in info["latent"]["codes"]] + list(info["roles"])


def test_schemathesis_finds_nothing_in_a_short_run(server, tmp_path):
    proc = schemathesis(server, tmp_path, examples=5, max_time_s=12)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    # Some cases were generated: "0 generated" as a count, not the tail of "250 generated".
    assert " passed" in proc.stdout and not re.search(r"(?<!\d)0 generated", proc.stdout), proc.stdout[-3000:]


@pytest.mark.slow
def test_schemathesis_finds_nothing_in_a_long_run(server, tmp_path):
    proc = schemathesis(server, tmp_path, examples=200, max_time_s=900)
    print(proc.stdout[-2000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


SEED_MAX = 2**32 - 1
EDGES = [  # (endpoint, body, status): each bound from both sides
    ("generate", {"n": 1}, 200), ("generate", {"n": 256}, 200), ("generate", {"n": 257}, 400),
    ("generate", {"n": 0}, 400),
    ("generate", {"n": 1, "codes": {"cont0": 3.0}}, 200), ("generate", {"n": 1, "codes": {"cont0": -3.0}}, 200),
    ("generate", {"n": 1, "codes": {"cont0": 3.0001}}, 400), ("generate", {"n": 1, "codes": {"cont1": -3.0001}}, 400),
    ("generate", {"n": 1, "codes": {"cat0": 9}}, 200), ("generate", {"n": 1, "codes": {"cat0": 10}}, 400),
    ("generate", {"n": 1, "codes": {"cat0": -1}}, 400),
    ("generate", {"n": 1, "seed": SEED_MAX}, 200), ("generate", {"n": 1, "seed": SEED_MAX + 1}, 400),
    ("generate", {"n": 1, "seed": -1}, 400),
    ("generate", {"n": 2, "ncol": 256}, 200), ("generate", {"n": 2, "ncol": 257}, 400),
    ("generate", {"n": 2, "ncol": 0}, 400),
    ("traverse", {"code": "cont0", "rows": 8, "steps": 32}, 200),  # 256 images: the per-request limit
    ("traverse", {"code": "cont0", "rows": 9, "steps": 2}, 400), ("traverse", {"code": "cont0", "steps": 33}, 400),
    ("traverse", {"code": "cont0", "rows": 1, "steps": 2}, 200), ("traverse", {"code": "cont0", "steps": 1}, 400),
    ("traverse", {"code": "cont0", "low": -3, "high": 3, "rows": 1}, 200),
    ("traverse", {"code": "cont0", "high": 3.01, "rows": 1}, 400),
    ("traverse", {"format": "gif", "rows": 1, "frame_ms": 20}, 200),
    ("traverse", {"format": "gif", "rows": 1, "frame_ms": 5000}, 200),
    ("traverse", {"format": "gif", "rows": 1, "frame_ms": 19}, 400),
    ("traverse", {"format": "gif", "rows": 1, "frame_ms": 5001}, 400),
]


@pytest.mark.parametrize("endpoint, body, status", EDGES, ids=[f"{e}-{b}" for e, b, _ in EDGES])
def test_limits_hold_exactly_at_their_edges(server, endpoint, body, status):
    r = requests.post(f"{server['url']}/{endpoint}", json=body, timeout=60)
    assert r.status_code == status, (r.status_code, r.text[:300])
