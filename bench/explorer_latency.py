"""Latent explorer: time from a slider move to the new grid painted, in real headless Chromium.

Starts ``bentoml serve`` on 127.0.0.1 (or uses --url), opens /explorer/, moves a continuous
code's slider one keyboard step at a time (--moves, default 50), waiting for each new grid,
and writes the page's own timings: performance.now() at the slider's ``input`` event to the
animation frame after the new <img> has decoded (debounce + request + PNG decode + one frame).

    BENTOML_HOME=.bentoml python bench/explorer_latency.py --out bench/results/explorer_latency.json

Needs a packaged model in the store and Debian's chromium + chromium-driver (see .ci/run).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service_process import running_service  # noqa: E402
from tests.test_explorer import (CHROMIUM, browser_missing, chromium_driver, open_explorer,  # noqa: E402
                                 percentile, save_page_screenshot, slider_latencies, wait_for)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="an already running service (default: start one)")
    ap.add_argument("--port", type=int, default=3931)
    ap.add_argument("--moves", type=int, default=50)
    ap.add_argument("--code", default="cont0", help="the continuous code whose slider moves")
    ap.add_argument("--warmup", type=int, default=5, help="moves made first and not counted")
    ap.add_argument("--out", default="bench/results/explorer_latency.json")
    ap.add_argument("--screenshot", help="also save a full-page screenshot here (e.g. docs/explorer.png)")
    args = ap.parse_args(argv)
    if reason := browser_missing():
        raise SystemExit(reason)

    env = dict(os.environ, BENTOML_DO_NOT_TRACK="true")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with running_service(args.url, env, port=args.port) as service:
        url = service.url
        info = requests.post(f"{url}/info", json={}, timeout=30).json()
        driver = chromium_driver()
        try:
            open_explorer(driver, url)
            slider_latencies(driver, args.code, args.warmup)
            timings = slider_latencies(driver, args.code, args.moves)
            browser = driver.capabilities.get("browserVersion")
            if args.screenshot:  # with a traversal playing, as a visitor would see it
                driver.find_element("id", "trav-play").click()
                wait_for(driver, "explorer.traversals >= 1")
                save_page_screenshot(driver, Path(args.screenshot))
        finally:
            driver.quit()

    ms = [t["ms"] for t in timings]
    wait = [t["wait_ms"] for t in timings]
    req = [t["request_ms"] for t in timings]
    dec = [t["decode_ms"] for t in timings]
    summary = lambda xs: {"p50": round(statistics.median(xs), 1), "p95": round(percentile(xs, 0.95), 1),  # noqa: E731
                          "min": round(min(xs), 1), "max": round(max(xs), 1)}
    result = {
        "what": "slider input event -> new grid painted (debounce + POST /generate + decode + next frame), "
                "measured in the page with performance.now()",
        "moves": len(ms), "code": args.code, "samples_per_grid": timings[0]["body"]["n"],
        "slider_to_paint_ms": summary(ms),
        "parts_ms": {"debounce": summary(wait), "request": summary(req), "decode_and_frame": summary(dec)},
        "all_ms": [round(x, 1) for x in ms],
        "model": info["model"]["tag"], "torch_threads": info.get("torch_threads"),
        "server_cold_start_s": service.cold_start_s,
        "browser": f"{CHROMIUM} {browser} (headless)",
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_after": round(os.getloadavg()[0], 2),
                    "platform": platform.platform(), "python": platform.python_version()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("moves", "slider_to_paint_ms", "parts_ms")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
