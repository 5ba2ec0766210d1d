"""A service to drive: one already running at a URL, or `bentoml serve` started from the
project root for the run and stopped after it (bench/serve_load.py, bench/explorer_latency.py,
and the tests' session server in tests/conftest.py)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_rss_mb(pid: int) -> dict:
    """RSS of the server's processes (the CLI/arbiter and its workers), in MiB."""
    import psutil  # noqa: PLC0415 - only the load bench reports memory

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {"total": None, "processes": {}}
    per = {}
    for p in procs:
        try:
            per[f"{p.pid} {' '.join(p.cmdline()[1:4])[:60]}"] = round(p.memory_info().rss / 2**20, 1)
        except psutil.NoSuchProcess:
            pass
    return {"total": round(sum(per.values()), 1), "processes": per}


@dataclass
class Service:
    url: str
    pid: int | None  # None: a service not started here (no cold start nor memory to report)
    cold_start_s: float | None

    def rss_mb(self) -> dict | None:
        return server_rss_mb(self.pid) if self.pid is not None else None


def stop_process_group(proc: subprocess.Popen, term_wait_s: float, kill_wait_s: float) -> None:
    """Stop a process started with ``start_new_session`` and all its children: SIGTERM to its
    group, SIGKILL if it is still there after ``term_wait_s``."""
    for sig, wait in ((signal.SIGTERM, term_wait_s), (signal.SIGKILL, kill_wait_s)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def running_service(url: str | None, env: dict, ready_timeout: float = 180, port: int | None = None,
                    log_path: Path | None = None):
    """The service at ``url`` once /readyz answers, or, without one, `bentoml serve` started here
    (on ``port``, else a free one; its cold start timed; its output in ``log_path``) and stopped
    afterwards. Not ready in time: SystemExit naming the URL, with the log's tail."""
    log_path = log_path or Path(tempfile.gettempdir()) / f"bentoml-serve.{os.getpid()}.log"
    t_start, proc = time.monotonic(), None
    if not url:
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "service.service:InfoGANGenerator",
                                     "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready = False
        while time.monotonic() - t_start < ready_timeout and (proc is None or proc.poll() is None):
            try:
                ready = requests.get(f"{url}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                pass
            if ready:
                break
            time.sleep(0.2)
        if not ready:
            tail = log_path.read_text(errors="replace")[-4000:] if proc is not None else ""
            raise SystemExit(f"server at {url} not ready after {time.monotonic() - t_start:.0f} s "
                             f"(exit code {proc and proc.poll()}); log {log_path}:\n{tail}")
        yield Service(url, proc.pid if proc else None, round(time.monotonic() - t_start, 2) if proc else None)
    finally:
        if proc is not None:
            stop_process_group(proc, term_wait_s=15, kill_wait_s=5)
