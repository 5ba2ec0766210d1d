"""The layout's promises: no import cycles, a core that knows no dataset, small files, docs that
are current, and DVC stages whose deps are exactly the code they import."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import ROOT

SRC = ROOT / "src"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC if path.is_relative_to(SRC) else ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    files = list((SRC / "infogan").rglob("*.py")) + list((ROOT / "pipelines").glob("*.py"))
    return {_module_name(p): p for p in files}


def _imports(name: str, path: Path, known: dict[str, Path], top_level_only: bool = False) -> set[str]:
    """Modules of this project that ``name`` imports anywhere in its file (late imports too), or
    at module level only."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_the_core_names_no_dataset_knowledge_and_never_imports_a_preset():
    graph = import_graph()
    core = {n: p for n, p in _modules().items() if n.startswith("infogan") and not n.startswith("infogan.presets")}
    offenders = [n for n in core if any(m.startswith("infogan.presets") for m in graph[n])]
    assert not offenders, offenders
    digit_words = re.compile(r"slant|stretch|shear|skew|deskew|stroke width|handwrit", re.I)
    named = {n: digit_words.findall(p.read_text()) for n, p in core.items()}
    assert not {n: w for n, w in named.items() if w}
    from infogan.config import InfoGANConfig

    schema = str(InfoGANConfig.model_json_schema())
    assert not digit_words.search(schema) and "width" not in schema.lower()


def test_no_source_file_over_350_lines():
    long = {str(p.relative_to(ROOT)): n for p in (SRC / "infogan").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 350}
    assert not long, long


def test_project_files_name_no_work_sessions_and_markdown_lines_stay_short():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout (a copied tree): read what is here
        tracked = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]
    session = re.compile(r"[Ss]top [0-9]+")
    for name in tracked:
        path = ROOT / name
        if not path.is_file() or b"\0" in (raw := path.read_bytes()):
            continue
        text = raw.decode(errors="replace")
        assert not session.search(text), f"{name} names a work session: {session.search(text).group(0)!r}"
        if path.suffix == ".md":
            long = [i + 1 for i, line in enumerate(text.splitlines()) if len(line) > 200]
            assert not long, f"{name}: lines over 200 characters: {long[:10]}"
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_configuration_doc_is_current():
    out = subprocess.run([sys.executable, "-m", "infogan", "config-docs", "--check"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def stage_modules(command: str) -> set[str]:
    """What ``python -m infogan <command>`` loads: the CLI's start-up imports, the command's
    module with everything it imports (late imports too), the presets the config loads through
    their entry points (pyproject.toml), and the packages all of these sit in."""
    import tomllib

    from infogan.cli import COMMAND_MODULES

    graph, known = import_graph(), _modules()
    presets = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["infogan.presets"]
    todo = {"infogan.__main__", COMMAND_MODULES[command], *presets.values()} | _imports("infogan.cli", known["infogan.cli"], known, top_level_only=True)
    seen = {"infogan.cli"}
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo |= graph.get(m, set())
    return seen | {".".join(m.split(".")[:i]) for m in seen for i in range(1, m.count(".") + 1)} & set(known)


def test_dvc_stage_deps_are_exactly_the_modules_their_command_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    modules = _modules()
    for stage, spec in stages.items():
        body = spec.get("do", spec)
        command = body["cmd"].split()[3]  # python -m infogan <command> ...
        want = {str(modules[m].relative_to(ROOT)) for m in stage_modules(command) if m in modules}
        have = set()
        for dep in (d for d in body["deps"] if d.startswith("src/")):  # a folder stands for its modules
            have |= {str(p.relative_to(ROOT)) for p in (ROOT / dep).rglob("*.py")} if (ROOT / dep).is_dir() else {dep}
        assert have == want, f"{stage}: missing {sorted(want - have)}, extra {sorted(have - want)}"


def test_every_dvc_param_is_a_key_of_params_yaml():
    """DVC fails a stage whose params name a key params.yaml leaves out (defaults do not count)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        for key in spec.get("do", spec).get("params", []):
            if "${" in key:
                continue
            node = raw
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{stage}: params.yaml has no {key}"
                node = node[part]


def test_training_params_are_the_keys_that_shape_the_model():
    """The train stage reruns for every key of latent, model and train except logging and progress."""
    from infogan.checkpoint import RUN_ONLY
    from infogan.config import TrainConfig

    run_only = {k.split(".", 1)[1] for k in RUN_ONLY}
    train = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["do"]["params"]
    assert {"latent", "model"} <= set(train)
    assert {k[len("train."):] for k in train if k.startswith("train.")} == set(TrainConfig.model_fields) - run_only
