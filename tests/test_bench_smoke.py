"""Seconds-long runs of the benchmarks in bench/ that are not smoke-tested elsewhere: each is run
as a script with tiny settings and the JSON it writes (to tmp_path) is checked for its fields and
for figures that agree with each other and with what was asked. Speed figures are never compared
with a threshold: they depend on the machine and its load.

explorer_latency.py and serve_load.py drive the session's real `bentoml serve` (tests/conftest.py
``server``) through their ``--url`` option instead of starting a server of their own."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from .conftest import ROOT, service_env, shared_dataset


def bench(script: str, *args: str, env: dict | None = None, timeout: int = 300) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def ordered(summary: dict) -> bool:
    """A latency summary's percentiles in order, all positive."""
    keys = [k for k in ("min", "p50", "p95", "p99", "max") if k in summary]
    values = [summary[k] for k in keys]
    return values[0] > 0 and values == sorted(values)


def test_explorer_latency_bench_moves_a_slider_in_chromium(server, tmp_path):
    from .test_explorer import require_browser

    require_browser()
    out = tmp_path / "explorer_latency.json"
    bench("explorer_latency.py", "--url", server["url"], "--moves", "3", "--warmup", "1", "--out", str(out))
    result = json.loads(out.read_text())
    assert (result["moves"], result["code"], len(result["all_ms"])) == (3, "cont0", 3)
    assert result["model"] == server["tag"] and result["samples_per_grid"] >= 1
    assert result["server_cold_start_s"] is None  # it used the running server, started none
    total = result["slider_to_paint_ms"]
    assert ordered(total) and min(result["all_ms"]) == total["min"] and max(result["all_ms"]) == total["max"]
    assert set(result["parts_ms"]) == {"debounce", "request", "decode_and_frame"}
    for part in result["parts_ms"].values():  # each part is inside the whole (0.1 ms: the JSON's rounding)
        assert 0 <= part["min"] <= part["p50"] <= part["max"] <= total["max"] + 0.1
    assert "headless" in result["browser"] and result["machine"]["cpus"] == os.cpu_count()


def test_serve_load_bench_drives_a_running_service(server, tmp_path):
    out = tmp_path / "serve_load.json"
    clients, per_client, n = 2, 3, 4
    bench("serve_load.py", "--url", server["url"], "--bentoml-home", str(server["home"]), "--clients", str(clients),
          "--requests", str(per_client), "--n", str(n), "--sequential", "3", "--forward-repeats", "2",
          "--out", str(out), env=service_env(server["home"]))
    result = json.loads(out.read_text())
    assert result["config"] == {"clients": clients, "requests_per_client": per_client, "n": n,
                                "endpoint": "/generate", "model_tag": server["tag"], "url": server["url"]}
    assert result["model"]["tag"] == server["tag"]
    # No server of its own: no cold start nor server memory to report.
    assert result["cold_start_s"] is None and result["rss_mb_before"] is None and result["rss_mb_after"] is None
    single = result["single_client"]
    assert single["requests"] == 3 and ordered(single["latency_ms"]) and single["server_g_forward_ms_mean"] > 0
    load = result["load"]
    assert (load["requests"], load["errors"], load["error_samples"]) == (clients * per_client, 0, [])
    assert ordered(load["latency_ms"]) and load["wall_s"] > 0
    assert load["images_per_s"] == pytest.approx(load["throughput_rps"] * n, rel=0.01, abs=0.2)
    # The server's own counters saw exactly the load's requests, batched into 1..6 forwards.
    batching = load["batching"]
    assert batching["requests"] == clients * per_client and 1 <= batching["forwards"] <= clients * per_client
    assert batching["mean_requests_per_forward"] == round(batching["requests"] / batching["forwards"], 2)
    assert 0 < batching["g_busy_fraction"] <= 1
    bare = result["bare_generator"]
    assert set(bare["before_server"]) == {"torch_threads", "repeats", f"n{n}"} and f"n{n}" in bare["after_server"]
    assert bare["reference_forward_ms"] == min(bare[k][f"n{n}"]["forward_ms_median"]
                                               for k in ("before_server", "after_server")) > 0
    assert all(v > 0 for v in result["overhead"].values())


def test_tracking_overhead_bench_compares_disabled_with_offline(tmp_path):
    """One fresh training process per mode, one step each, a small test split for the epoch's
    evaluation; W&B offline writes into the bench's own temporary folder."""
    out = tmp_path / "tracking_overhead.json"
    bench("tracking_overhead.py", "--data", str(shared_dataset("mnist")), "--steps", "1", "--epochs", "1",
          "--batch", "16", "--repeats", "1", "--prepared", str(tmp_path / "prepared"), "-S", "data.test_subset=64",
          "--out", str(out), timeout=600)
    result = json.loads(out.read_text())
    assert (result["steps"], result["epochs"], result["batch_size"], result["repeats"]) == (1, 1, 16, 1)
    assert result["overrides"] == ["data.test_subset=64"]
    runs = result["runs"]
    assert {mode: [r["mode"] for r in rs] for mode, rs in runs.items()} == {"disabled": ["disabled"],
                                                                            "offline": ["offline"]}
    for (run,) in runs.values():
        assert run["steps"] == 1 and run["loop_s"] > 0 and run["wall_s"] >= run["loop_s"]
        assert set(run["logger_calls_s"]) == {"start", "log_steps", "log_epoch", "log_model", "finish"}
    # Only the offline run started W&B (its init line was found in the child's log).
    inits = {mode: rs[0]["wandb_init_s"] for mode, rs in runs.items()}
    assert inits["disabled"] is None and inits["offline"] is not None and inits["offline"] > 0
    assert result["wandb_init_s_median"] == inits["offline"]
    med = result["median"]
    assert med["offline"]["wall_s"] == runs["offline"][0]["wall_s"]  # the median of one run is that run
    assert result["overhead_wall_s"] == pytest.approx(med["offline"]["wall_s"] - med["disabled"]["wall_s"])
    assert result["overhead_direct_s"] == pytest.approx(
        med["offline"]["logger_total_s"] - med["disabled"]["logger_total_s"] + med["offline"]["tracking_service_cpu_s"])
    assert all(math.isfinite(result[k]) for k in ("overhead_wall_pct", "overhead_loop_pct", "overhead_direct_pct"))
