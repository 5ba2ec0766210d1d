"""Latent traversals: per code, a grid whose rows are different noise vectors and
whose columns are the code's values, other codes held fixed; a GIF of the same
grid over training snapshots (both in ``images/``, which ``dvc plots`` shows); a JSON
manifest of what every file shows (paths relative to the output folder)."""
from __future__ import annotations

from pathlib import Path

import torch

from .config import InfoGANConfig, TraverseConfig
from .evaluate import generate
from .images import make_grid, save_gif, save_png
from .checkpoint import load_checkpoint, rebuild_generator
from .io import atomic_write_json
from .latent import LatentSpec, traversal_latents
from .nets import Generator
from .tracking import RunLogger

IMAGES = "images"  # the grids and GIFs, apart from the manifest: `dvc plots` reads every file of a plotted folder


def code_values(spec: LatentSpec, code: str, tc: TraverseConfig) -> list:
    if code.startswith("cat"):
        return list(range(spec.categorical[int(code[3:])]))
    steps = tc.continuous_steps
    return [round(-tc.continuous_range + 2 * tc.continuous_range * i / (steps - 1), 6) for i in range(steps)]


def render(g: Generator, code: str, tc: TraverseConfig, device) -> torch.Tensor:
    values = code_values(g.spec, code, tc)
    return generate(g, g.spec, traversal_latents(g.spec, code, tc.rows, values, tc.seed), device)


def _load_generator(path: Path, device) -> tuple[Generator, dict]:
    blob = load_checkpoint(path, device)
    return rebuild_generator(blob, device), blob


def traverse(tc: TraverseConfig, run_dir: str | Path, out_dir: str | Path, device="cpu",
             config: InfoGANConfig | None = None, experiment: str | None = None) -> dict:
    """``config``: the full config, whose ``tracking`` section sends the grids, a (code, value,
    image) table and the GIFs to W&B (a ``traverse`` job run); None = files only."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    g, ckpt = _load_generator(run_dir / "checkpoint.pt", device)
    spec = g.spec
    codes = [c["name"] for c in spec.describe()]
    snapshots = sorted((run_dir / "snapshots").glob("generator_epoch_*.pt"))
    snapshot_gens = [(int(p.stem.rsplit("_", 1)[1]), _load_generator(p, device)[0]) for p in snapshots]
    manifest = {"checkpoint": str(run_dir / "checkpoint.pt"), "epoch": ckpt["epoch"],
                "latent": spec.to_dict(), "rows": tc.rows, "seed": tc.seed, "files": []}
    for code in codes:
        values = code_values(spec, code, tc)
        png = out_dir / IMAGES / f"{code}.png"
        save_png(make_grid(render(g, code, tc, device), len(values)), png)
        other = ("other categorical codes random per row, continuous codes 0" if code.startswith("cat")
                 else "cat0 = row index mod its size, other continuous codes 0")
        manifest["files"].append({"file": f"{IMAGES}/{png.name}", "code": code, "kind": "grid", "epoch": ckpt["epoch"],
                                  "columns": values, "rows": f"{tc.rows} noise vectors", "fixed": other})
        if snapshot_gens:
            frames = [make_grid(render(sg, code, tc, device), len(values)) for _, sg in snapshot_gens]
            gif = out_dir / IMAGES / f"{code}_over_epochs.gif"
            save_gif(frames, gif, tc.gif_frame_ms)
            manifest["files"].append({"file": f"{IMAGES}/{gif.name}", "code": code, "kind": "gif_over_epochs",
                                      "epochs": [e for e, _ in snapshot_gens], "columns": values})
    atomic_write_json(out_dir / "manifest.json", manifest)
    if config is not None:
        with RunLogger(run_dir, config, experiment, job_type="traverse").start() as tracker:
            tracker.log_traversals(manifest, out_dir)
    return manifest
