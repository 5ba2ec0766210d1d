"""What the pipeline's stages left behind, read for the flows' artifacts and the sweep's table:
metrics JSON, grids and traversals in the workspace, and the records of DVC experiments."""
from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import yaml

from . import promotion

HEADLINE = ("accuracy", "nmi", "mi_cat", "h_cat")


def num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    return "nan" if math.isnan(value) else f"{value:.4g}"


def dotted(node: Any, key: str) -> Any:
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def collect_results(root: Path, experiments: list[str]) -> dict:
    """Metrics and output paths the stages left in the workspace (all relative to ``root``)."""
    out: dict[str, Any] = {"experiments": {}}
    for name in experiments:
        metrics_file = root / "metrics" / f"{name}.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        manifest_file = root / "traversals" / name / "manifest.json"
        manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
        grids = sorted(str(p.relative_to(root)) for p in (root / "runs" / name / "grids").glob("*.png"))
        out["experiments"][name] = {
            "metrics_file": str(metrics_file.relative_to(root)),
            "metrics": {k: metrics.get(k) for k in HEADLINE if k in metrics}
            | {"fid": dotted(metrics, "image_quality.fid"), "epoch": metrics.get("epoch")},
            "grids": grids,
            "progress_gif": f"runs/{name}/progress.gif" if (root / "runs" / name / "progress.gif").is_file() else None,
            "traversals": [f"traversals/{name}/{f['file']}" for f in manifest.get("files", [])],
        }
    selection_file, package_file = root / promotion.SELECTION, root / promotion.PACKAGE_RECORD
    if selection_file.is_file():
        selection = json.loads(selection_file.read_text())
        out["selection"] = {"metric": selection.get("metric"), "mode": selection.get("mode"),
                            "winner": (selection.get("winner") or {}).get("experiment"),
                            "value": (selection.get("winner") or {}).get("value")}
    if package_file.is_file():
        out["package"] = {"tag": json.loads(package_file.read_text()).get("tag")}
    return out


def metrics_markdown(results: dict, stages: list[dict], overrides: list[str]) -> str:
    lines = ["# InfoGAN pipeline run", ""]
    if overrides:
        lines += ["Overrides: " + ", ".join(f"`{o}`" for o in overrides), ""]
    lines += ["| experiment | epoch | accuracy | NMI | L_I (mi_cat) | H(c) | FID | grids | traversals |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, item in results["experiments"].items():
        m = item["metrics"]
        grids = "<br>".join(f"`{g}`" for g in item["grids"]) or "-"
        trav = "<br>".join(f"`{t}`" for t in item["traversals"] if t.endswith(".png")) or "-"
        lines.append(f"| {name} | {num(m.get('epoch'))} | {num(m.get('accuracy'))} | {num(m.get('nmi'))} | "
                     f"{num(m.get('mi_cat'))} | {num(m.get('h_cat'))} | {num(m.get('fid'))} | {grids} | {trav} |")
    if "selection" in results:
        s = results["selection"]
        lines += ["", f"Selected: **{s['winner']}** on {s['metric']} ({s['mode']}) = {num(s['value'])}"]
    if "package" in results:
        lines += [f"Packaged: `{results['package']['tag']}`"]
    lines += ["", "| stage | status | seconds | attempt |", "| --- | --- | --- | --- |"]
    lines += [f"| {s['stage']} | {s['status']} | {s['seconds']:.1f} | {s['attempt']} |" for s in stages]
    return "\n".join(lines) + "\n"


def _git(root: Path, *args: str) -> str | None:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60)
    return proc.stdout if proc.returncode == 0 else None


def experiment_metrics(root: Path, name: str) -> dict:
    """Each experiment's metrics JSON and the package record as committed in DVC experiment
    ``name`` (both are ``cache: false`` outputs, so the experiment's git commit holds them)."""
    refs = (_git(root, "for-each-ref", "--sort=-creatordate", "--format=%(refname)", "refs/exps") or "").split()
    ref = next((r for r in refs if r.rsplit("/", 1)[-1] == name), None)
    if ref is None:
        raise RuntimeError(f"DVC experiment {name!r} not found under refs/exps")
    params = yaml.safe_load(_git(root, "show", f"{ref}:params.yaml") or "{}") or {}
    out: dict[str, Any] = {}
    for exp in params.get("experiments") or {}:
        text = _git(root, "show", f"{ref}:metrics/{exp}.json")
        if text:
            out[exp] = json.loads(text)
    package = _git(root, "show", f"{ref}:{promotion.PACKAGE_RECORD}")
    if package:
        out["_package"] = json.loads(package)
    out["_select"] = (params.get("pipeline") or {}).get("select") or {}
    out["_ref"] = ref
    return out


def comparison_rows(outcomes: list[dict]) -> list[dict]:
    """One row per grid point: the selection metric's winning value, per-experiment headline
    figures; ranked best first (failed points last)."""
    rows = []
    for item in outcomes:
        metrics = item.get("metrics") or {}
        select = metrics.get("_select") or {}
        metric, mode = select.get("metric", "accuracy"), select.get("mode", "max")
        candidates = select.get("experiments") or [k for k in metrics if not k.startswith("_")]
        values = {e: dotted(metrics.get(e) or {}, metric) for e in candidates}
        values = {e: v for e, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        winner = (max if mode == "max" else min)(values, key=values.get) if values else None
        per = {}
        for exp, m in metrics.items():
            if not exp.startswith("_"):
                for key in ("accuracy", "nmi"):
                    per[f"{exp}.{key}"] = m.get(key)
        rows.append({"experiment": item["name"], "overrides": " ".join(item.get("overrides", [])),
                     "status": item["status"], "metric": metric, "mode": mode,
                     "value": values.get(winner) if winner else None, "winner": winner,
                     "seconds": item.get("seconds"), "error": item.get("error"),
                     "package_tag": (metrics.get("_package") or {}).get("tag"), "per_experiment": per})
    ok = [r for r in rows if r["value"] is not None]
    ok.sort(key=lambda r: r["value"], reverse=(ok[0]["mode"] == "max") if ok else True)
    rest = [r for r in rows if r["value"] is None]
    for i, row in enumerate(ok + rest, 1):
        row["rank"] = i if row["value"] is not None else None
    return ok + rest
