"""`kill -9` at random points of `dvc repro` (inside prepare, train and package): the next run
leaves no temp file, `dvc status` is clean, and the BentoML store, models/package.json and the
exported model agree on one version."""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_dvc_project, service_env, tool_environ

STAGES = ("prepare@mnist", "train@mnist", "package")
RUNNING = re.compile(r"Running stage '([^']+)'")


class Repro:
    """`dvc repro` in its own process group, with the time each stage started."""

    def __init__(self, root: Path):
        self.started: dict[str, float] = {}
        self.lines: list[str] = []
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(["dvc", "repro"], cwd=root, env=tool_environ(root), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            found = RUNNING.search(line)
            if found:
                self.started[found.group(1)] = time.monotonic() - self.t0

    def wait(self, timeout: float = 900) -> int:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code

    def kill_during(self, stage: str, after_s: float, timeout: float = 900) -> str:
        """Kill the whole group ``after_s`` seconds into ``stage``; what happened, in words."""
        deadline = time.monotonic() + timeout
        while stage not in self.started and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if stage not in self.started:
            self.wait()
            return f"{stage} never ran (exit {self.proc.returncode})"
        time.sleep(max(0.0, self.started[stage] + after_s - (time.monotonic() - self.t0)))
        if self.proc.poll() is not None:
            return f"finished before the kill (exit {self.proc.returncode})"
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.wait()
        return f"killed {after_s:.1f}s into {stage}"


def stage_durations(repro: Repro) -> dict[str, float]:
    order = sorted(repro.started.items(), key=lambda item: item[1])
    ends = [t for _, t in order[1:]] + [time.monotonic() - repro.t0]
    return {name: end - start for (name, start), end in zip(order, ends)}


def change_for(root: Path, stage: str, round_no: int) -> None:
    """A params edit that makes ``dvc repro`` run ``stage`` (and what follows it)."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    if stage.startswith("prepare"):  # a value not seen before: DVC's run cache would restore a seen one
        params["data"]["test_subset"] = 400 + round_no
    elif stage.startswith("train"):
        params["train"]["epochs"] += 1
    else:  # package: a different selection record (same winner) makes a new store version
        select = params["pipeline"]["select"]
        select["metric"] = "nmi" if select["metric"] == "accuracy" else "accuracy"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp*")
            if not {".git", ".dvc"} & set(p.relative_to(root).parts[:1])]


def exported_version(export: Path) -> tuple[str, str]:
    """(name, version) of the model in an exported .bentomodel (what the service image imports)."""
    with tarfile.open(export) as archive:
        member = next(m for m in archive.getmembers() if m.name.lstrip("./") == "model.yaml")
        info = yaml.safe_load(archive.extractfile(member))
    return info["name"], info["version"]


def store_agrees(root: Path) -> None:
    record = json.loads((root / "models/package.json").read_text())
    home = Path(record["bentoml_home"])
    name, version = record["tag"].split(":")
    assert (home / "models" / name / "latest").read_text().strip() == version
    versions = [p for p in (home / "models" / name).iterdir() if p.is_dir()]
    for folder in versions:  # nothing half-written in the store
        assert (folder / "model.yaml").is_file(), f"unfinished store version {folder.name}"
    assert exported_version(root / record["export_path"]) == (name, version)
    listed = subprocess.run(["bentoml", "models", "list", name, "-o", "json"], cwd=root, env=tool_environ(root),
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert record["tag"] in listed.stdout


def campaign(root: Path, kills: int, seed: int) -> list[str]:
    first = Repro(root)
    assert first.wait() == 0, "".join(first.lines)[-3000:]
    durations = stage_durations(first)
    rng = random.Random(seed)
    log = []
    for round_no in range(kills):
        stage = STAGES[round_no % len(STAGES)]
        change_for(root, stage, round_no)
        repro = Repro(root)
        log.append(repro.kill_during(stage, rng.uniform(0, durations[stage])))
    final = Repro(root)
    assert final.wait() == 0, "\n".join(log) + "".join(final.lines)[-3000:]
    return log


def check_after(root: Path, log: list[str]) -> None:
    assert temp_files(root) == [], log
    status = subprocess.run(["dvc", "status"], cwd=root, env=tool_environ(root), capture_output=True, text=True,
                            timeout=300)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + "\n".join(log)
    store_agrees(root)


@pytest.mark.slow
def test_ten_kills_leave_nothing_behind(tmp_path):
    root = make_dvc_project(tmp_path / "project")
    seed = int(os.environ.get("INFOGAN_KILL_SEED", "10"))
    log = campaign(root, kills=10, seed=seed)
    print("\n".join(log))
    check_after(root, log)
    assert sum(line.startswith("killed") for line in log) >= 8, log


def test_package_undoes_what_an_interrupted_package_left(packaged_model, tmp_path):
    """What a kill inside `package` can leave, made by hand: a half-copied store version (no
    model.yaml; model.yaml but a truncated file), a `latest` pointer to neither, BentoML's
    staging folder and temp files beside the export and the record. The next run removes them
    all, and the store, the record and the export agree."""
    project = tmp_path / "project"
    shutil.copytree(packaged_model["project"], project)
    home = project / "bentoml"
    versions = home / "models" / "infogan-generator"
    finished = versions / packaged_model["tag"].split(":")[1]
    torn = versions / "aaaaaaaaaaaaaaaa"
    shutil.copytree(finished, torn)
    (torn / "generator.pt").write_bytes((torn / "generator.pt").read_bytes()[:1000])
    info = yaml.safe_load((torn / "model.yaml").read_text())
    info["version"] = torn.name
    (torn / "model.yaml").write_text(yaml.safe_dump(info))
    no_yaml = versions / "bbbbbbbbbbbbbbbb"
    no_yaml.mkdir()
    (no_yaml / "generator.pt").write_bytes(b"half")
    (versions / "latest").write_text(no_yaml.name)
    (home / "infogan-staging" / "bentoml-model-x").mkdir(parents=True)
    leftovers = [project / "models/.package.json.k1.tmp", project / "models/.infogan-generator.bentomodel.k2.tmp",
                 project / "models/.infogan-generator.bentomodel.k3.tmp.bentomodel"]
    for path in leftovers:
        path.write_bytes(b"x" * 100)
    proc = subprocess.run([sys.executable, "-c", "from infogan import cli; assert cli.main(['package']) == 0"],
                          cwd=project, env=service_env(home), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"removed infogan-generator:{torn.name}" in proc.stdout and no_yaml.name in proc.stdout
    assert not torn.exists() and not no_yaml.exists() and not (home / "infogan-staging").exists()
    assert not any(path.exists() for path in leftovers)
    record = json.loads((project / "models/package.json").read_text())
    assert (versions / "latest").read_text().strip() == record["tag"].split(":")[1]
    assert exported_version(project / record["export_path"]) == tuple(record["tag"].split(":"))
