"""Load on the real generation service: start ``bentoml serve`` on 127.0.0.1, wait for
/readyz (cold start), then drive ``/generate`` with C concurrent clients x R requests each
(default 16 x 1000, n=16 images per request) and write latency percentiles, throughput,
errors, the server's memory (all its processes) before and after, how the service batched,
and the bare G forward time for the same batch: overhead ratio = server p50 / bare forward.

    BENTOML_HOME=.bentoml python bench/serve_load.py --out bench/results/serve_load.json

Needs a packaged model in the store (``dvc repro`` or ``python -m infogan package``). With
``--url`` it drives an already running service instead (no cold start or server memory then;
the bare forward loads the model that service reports from the store at --bentoml-home). The
clients run on the same machine as the server and share its cores: on a small machine the
figures are a floor for the service, not a ceiling.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import requests
import torch

from service_process import running_service

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the `service` package, as `bentoml serve` sees it from the root


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def bare_forward_ms(model_dir: str, sizes: list[int], repeats: int, threads: int) -> dict:
    """G alone on n latents per size (as the service runs it: inference mode, same padding
    rule, the server worker's thread count), and G plus the PNG grid encoding; median ms."""
    from infogan.images import make_grid  # noqa: PLC0415
    from service.engine import Engine, png_bytes  # noqa: PLC0415

    torch.set_num_threads(threads)
    engine = Engine(model_dir)
    out = {"torch_threads": torch.get_num_threads(), "repeats": repeats}
    for n in sizes:
        x = engine.spec.assemble(engine.latents(n, 0, {}))
        fwd, full = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            images = engine.batcher.forward(x)
            t1 = time.perf_counter()
            png_bytes(make_grid(images, max(1, round(n ** 0.5))))
            t2 = time.perf_counter()
            fwd.append((t1 - t0) * 1000)
            full.append((t2 - t0) * 1000)
        out[f"n{n}"] = {"forward_ms_median": round(statistics.median(fwd), 3),
                        "forward_ms_min": round(min(fwd), 3),
                        "forward_plus_png_ms_median": round(statistics.median(full), 3),
                        "images_per_s": round(n / statistics.median(fwd) * 1000, 1)}
    return out


def latency_summary(values: list[float]) -> dict:
    lat = sorted(values)
    return {"p50": round(percentile(lat, 0.50), 2), "p95": round(percentile(lat, 0.95), 2),
            "p99": round(percentile(lat, 0.99), 2), "max": round(lat[-1], 2), "mean": round(statistics.fmean(lat), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="an already running service (default: start one)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=1000, help="per client")
    ap.add_argument("--n", type=int, default=16, help="images per request")
    ap.add_argument("--model-tag", default=os.environ.get("INFOGAN_MODEL_TAG", "infogan-generator:latest"))
    ap.add_argument("--bentoml-home", default=os.environ.get("BENTOML_HOME", str(ROOT / ".bentoml")))
    ap.add_argument("--ready-timeout", type=float, default=180)
    ap.add_argument("--sequential", type=int, default=200, help="requests from one client first (no queueing)")
    ap.add_argument("--forward-repeats", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_load.json"))
    args = ap.parse_args()

    from infogan.env import tool_env  # noqa: PLC0415

    env = dict(os.environ)
    env.update(tool_env(ROOT))
    env.update({"BENTOML_HOME": str(Path(args.bentoml_home).resolve()), "INFOGAN_MODEL_TAG": args.model_tag,
                "BENTOML_DO_NOT_TRACK": "true"})
    os.environ["BENTOML_HOME"] = env["BENTOML_HOME"]  # for the in-process bare forwards
    import bentoml  # noqa: PLC0415 - after BENTOML_HOME is set

    if args.url:  # the bare forward must run the model that service serves
        args.model_tag = requests.post(f"{args.url}/info", json={}, timeout=30).json()["model"]["tag"]
    model_dir = bentoml.models.get(args.model_tag).path
    bare_before = bare_forward_ms(model_dir, [args.n], args.forward_repeats, torch.get_num_threads())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    result: dict = {"config": {"clients": args.clients, "requests_per_client": args.requests, "n": args.n,
                               "endpoint": "/generate", "model_tag": args.model_tag, "url": args.url},
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "load_avg_at_start": os.getloadavg(), "torch": torch.__version__}}
    with running_service(args.url, env, args.ready_timeout) as service:
        url = service.url
        result["cold_start_s"] = service.cold_start_s
        info = requests.post(f"{url}/info", json={}, timeout=30).json()
        result["model"] = info["model"]
        warm = requests.post(f"{url}/generate", json={"n": args.n, "seed": 0}, timeout=60)
        warm.raise_for_status()
        result["rss_mb_before"] = service.rss_mb()
        seq_before = requests.post(f"{url}/info", json={}, timeout=30).json()["batching"]
        session, seq = requests.Session(), []
        for i in range(args.sequential):
            t0 = time.perf_counter()
            session.post(f"{url}/generate", json={"n": args.n, "seed": 10**6 + i}, timeout=60).raise_for_status()
            seq.append((time.perf_counter() - t0) * 1000)
        stats_before = requests.post(f"{url}/info", json={}, timeout=30).json()["batching"]
        g_ms = (stats_before["forward_s"] - seq_before["forward_s"]) * 1000 / max(1, args.sequential)
        result["single_client"] = {"requests": args.sequential, "latency_ms": latency_summary(seq),
                                   "server_g_forward_ms_mean": round(g_ms, 3)}

        latencies: list[list[float]] = [[] for _ in range(args.clients)]
        errors: list[list[str]] = [[] for _ in range(args.clients)]
        barrier = threading.Barrier(args.clients + 1)

        def client(k: int) -> None:
            session = requests.Session()
            barrier.wait()
            for i in range(args.requests):
                body = {"n": args.n, "seed": (k * args.requests + i) % 2**32}
                t0 = time.perf_counter()
                try:
                    r = session.post(f"{url}/generate", json=body, timeout=60)
                    ok = r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
                    if not ok:
                        errors[k].append(f"{r.status_code} {r.text[:100]}")
                except requests.RequestException as exc:
                    errors[k].append(type(exc).__name__)
                latencies[k].append((time.perf_counter() - t0) * 1000)

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(args.clients)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0

        result["rss_mb_after"] = service.rss_mb()
        stats_after = requests.post(f"{url}/info", json={}, timeout=30).json()["batching"]
        lat = sorted(x for per in latencies for x in per)
        n_err = sum(len(e) for e in errors)
        total = len(lat)
        forwards = stats_after["forwards"] - stats_before["forwards"]
        handled = stats_after["requests"] - stats_before["requests"]
        result["load"] = {
            "requests": total, "errors": n_err, "error_samples": sorted({e for per in errors for e in per})[:5],
            "wall_s": round(wall, 2), "throughput_rps": round(total / wall, 1),
            "images_per_s": round(total * args.n / wall, 1),
            "latency_ms": latency_summary(lat),
            "batching": {"forwards": forwards, "requests": handled,
                         "mean_requests_per_forward": round(handled / forwards, 2) if forwards else None,
                         "mean_images_per_forward": round(handled * args.n / forwards, 1) if forwards else None,
                         "max_requests_per_forward": stats_after["max_requests_per_forward"],
                         "server_g_forward_ms_mean": round((stats_after["forward_s"] - stats_before["forward_s"])
                                                           * 1000 / max(1, forwards), 2),
                         "g_busy_fraction": round((stats_after["forward_s"] - stats_before["forward_s"]) / wall, 3)},
        }

    # G alone in this process, before the server started and after it stopped (the cores are
    # shared with other jobs here, so the less contended of the two is the reference), and
    # G's own time inside the server (the batcher's forward timer), under the same conditions.
    batch_rows = min(256, round(result["load"]["batching"]["mean_images_per_forward"] or args.n))
    threads = info.get("torch_threads") or torch.get_num_threads()
    bare_after = bare_forward_ms(model_dir, sorted({args.n, batch_rows}), args.forward_repeats, threads)
    key = f"n{args.n}"
    bare_ms = min(bare_before[key]["forward_ms_median"], bare_after[key]["forward_ms_median"])
    result["bare_generator"] = {"before_server": bare_before, "after_server": bare_after,
                                "reference_forward_ms": bare_ms}
    single, load = result["single_client"], result["load"]
    result["overhead"] = {
        # One request at a time: HTTP, validation, latents, batcher and PNG on top of G.
        "single_client_p50_over_bare_forward": round(single["latency_ms"]["p50"] / bare_ms, 2),
        "single_client_p50_over_server_forward": round(single["latency_ms"]["p50"]
                                                       / single["server_g_forward_ms_mean"], 2),
        # Under load the p50 is mostly queueing behind G (Little's law: clients / throughput).
        "concurrent_p50_over_bare_forward": round(load["latency_ms"]["p50"] / bare_ms, 2),
        # How much of the wall time G itself was running: near 1 = the service is G-bound.
        "g_busy_fraction_under_load": load["batching"]["g_busy_fraction"],
    }
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("cold_start_s", "single_client", "load", "overhead")}, indent=2))
    if result["rss_mb_before"] is not None:
        print(f"server RSS MiB before/after: {result['rss_mb_before']['total']} / "
              f"{result['rss_mb_after']['total']}")
    print(f"wrote {args.out}")
    return 0 if result["load"]["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
