"""Run DVC (and the project's tools) as child processes, streaming their output line by line.

DVC is driven through its CLI, as a user would (``dvc repro -s``, ``dvc exp run``, ``dvc
status``): its lock, dvc.lock and run cache behave exactly as on the command line, and a
stage's own stdout/stderr reaches the caller's log as it is written.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from infogan.env import tool_env

RAN = re.compile(r"Running stage '([^']+)'")
SKIPPED = re.compile(r"Stage '([^']+)' didn't change, skipping")
RESTORED = re.compile(r"Stage '([^']+)' is cached - skipping run")
CMD_EXIT = re.compile(r"exited with (-?\d+)")
LOCKED = ("Unable to acquire lock", "Lock is already acquired")
# The infogan CLI exits 2 when it rejects its inputs (ConfigError, DataError, missing file):
# running it again cannot help, so such failures are not retried.
BAD_INPUT_EXITS = (2, 3, 4)  # the infogan CLI's config, data and prerequisite errors: retrying cannot help


class StageFailed(RuntimeError):
    """A DVC command failed; the message carries the stage's own error lines."""

    def __init__(self, what: str, returncode: int, lines: list[str]):
        self.what, self.returncode = what, returncode
        exits = [int(m.group(1)) for line in lines if (m := CMD_EXIT.search(line))]
        self.cmd_exit = exits[-1] if exits else None
        self.locked = any(marker in line for line in lines for marker in LOCKED)
        super().__init__(f"{what} failed (exit {returncode}):\n{error_summary(lines)}")

    @property
    def transient(self) -> bool:
        """Worth another try: anything but a command that rejected its inputs."""
        return self.locked or self.cmd_exit not in BAD_INPUT_EXITS


class InjectedFailure(RuntimeError):
    """A test-only transient failure (INFOGAN_PIPELINES_FAULTS), raised before the real command."""

    transient = True


def error_summary(lines: list[str], tail: int = 15) -> str:
    """The lines that say what went wrong: `error:`/`ERROR:` lines and a traceback's last line;
    else the output's last lines."""
    picked = []
    for i, line in enumerate(lines):
        text = line.strip()
        if re.match(r"^(error|ERROR)\b", text):
            picked.append(text)
        elif text.startswith("Traceback") and i + 1 < len(lines):
            tb_end = next((lines[j].strip() for j in range(len(lines) - 1, i, -1)
                           if lines[j].strip() and not lines[j].startswith((" ", "\t"))
                           and not re.match(r"^(error|ERROR)\b", lines[j].strip())), None)
            if tb_end and tb_end not in picked:
                picked.append(tb_end)
    return "\n".join(picked) if picked else "\n".join(line.rstrip() for line in lines[-tail:])


def environ(root: str | Path) -> dict[str, str]:
    """The environment for the project's tools: this interpreter's bin first on PATH (dvc.yaml's
    ``python -m infogan``), every tool's state inside the project unless set explicitly."""
    env = dict(os.environ)
    for key, value in tool_env(root).items():
        env.setdefault(key, value)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Result:
    returncode: int
    seconds: float
    lines: list[str] = field(default_factory=list)   # the last lines only (see ``keep``)

    @property
    def ran(self) -> list[str]:
        return [m.group(1) for line in self.lines if (m := RAN.search(line))]


def stream(cmd: list[str], root: str | Path, on_line: Callable[[str], None] | None = None,
           keep: int = 400, timeout_s: float | None = None) -> Result:
    """Run ``cmd`` in ``root``; every output line (stdout and stderr merged, in order) goes to
    ``on_line`` as it arrives; progress-bar redraws (carriage returns) keep their last state."""
    start = time.perf_counter()
    lines: deque[str] = deque(maxlen=keep)
    proc = subprocess.Popen(cmd, cwd=root, env=environ(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", bufsize=1)
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            line = raw.rstrip("\n").split("\r")[-1].rstrip()
            if not line:
                continue
            lines.append(line)
            if on_line is not None:
                on_line(line)
        returncode = proc.wait(timeout=timeout_s)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return Result(returncode, time.perf_counter() - start, list(lines))


def stage_outcome(stage: str, result: Result) -> str:
    text = "\n".join(result.lines)
    if re.search(rf"Running stage '{re.escape(stage)}'", text):
        return "ran"
    if re.search(rf"Stage '{re.escape(stage)}' is cached - skipping run", text):
        return "restored"
    return "skipped"


def status(root: str | Path, *targets: str, with_deps: bool = True) -> dict:
    """``dvc status --json`` (empty: every listed stage and its upstream is up to date)."""
    cmd = ["dvc", "status", "--json", *(["--with-deps"] if with_deps and targets else []), *targets]
    result = subprocess.run(cmd, cwd=root, env=environ(root), capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise StageFailed(" ".join(cmd), result.returncode, (result.stdout + result.stderr).splitlines())
    out = result.stdout.strip()
    return json.loads(out[out.index("{"):]) if "{" in out else {}


def injected_failures(stage: str, attempt: int) -> bool:
    """``INFOGAN_PIPELINES_FAULTS="train@mnist=1,select=2"``: the first N attempts of a stage fail
    before the real command runs (tests of the retry path; unset in normal use)."""
    spec = os.environ.get("INFOGAN_PIPELINES_FAULTS", "")
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, count = item.partition("=")
        if name.strip() == stage and attempt <= int(count or 1):
            return True
    return False
