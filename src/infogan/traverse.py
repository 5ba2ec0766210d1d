"""Latent traversals: per code, a grid whose rows are different noise vectors and
whose columns are the code's values, other codes held fixed; a GIF of the same
grid over training snapshots; a JSON manifest of what every file shows."""
from __future__ import annotations

from pathlib import Path

import torch

from .config import TraverseConfig
from .evaluate import generate
from .images import make_grid, save_gif, save_png
from .io import atomic_write_json, safe_load
from .latent import LatentBatch, LatentSpec
from .nets import Generator


def traversal_latents(spec: LatentSpec, code: str, rows: int, values: list, seed: int) -> LatentBatch:
    """Latents for one code's traversal, row-major: row r, column = value index."""
    gen = torch.Generator().manual_seed(seed)
    base = spec.sample(rows, gen)
    cols = len(values)
    z = base.z.repeat_interleave(cols, 0)
    cat = base.cat.repeat_interleave(cols, 0)
    cont = torch.zeros(rows * cols, spec.continuous)
    index = int(code.lstrip("catont"))
    if code.startswith("cat"):
        cat[:, index] = torch.tensor(values, dtype=torch.long).repeat(rows)
    else:
        if spec.categorical:  # one category per row, as in the paper's Figure 2
            cat[:, 0] = (torch.arange(rows) % spec.categorical[0]).repeat_interleave(cols)
        cont[:, index] = torch.tensor(values, dtype=torch.float32).repeat(rows)
    return LatentBatch(z, cat, cont)


def code_values(spec: LatentSpec, code: str, tc: TraverseConfig) -> list:
    if code.startswith("cat"):
        return list(range(spec.categorical[int(code[3:])]))
    steps = tc.continuous_steps
    return [round(-tc.continuous_range + 2 * tc.continuous_range * i / (steps - 1), 6) for i in range(steps)]


def render(g: Generator, code: str, tc: TraverseConfig, device) -> torch.Tensor:
    values = code_values(g.spec, code, tc)
    return generate(g, g.spec, traversal_latents(g.spec, code, tc.rows, values, tc.seed), device)


def _load_generator(path: Path, device) -> tuple[Generator, dict]:
    blob = safe_load(path, device)
    g = Generator(**blob["generator_args"]).to(device)
    g.load_state_dict(blob["generator"])
    return g.eval(), blob


def traverse(tc: TraverseConfig, run_dir: str | Path, out_dir: str | Path, device="cpu") -> dict:
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
        png = out_dir / f"{code}.png"
        save_png(make_grid(render(g, code, tc, device), len(values)), png)
        other = ("other categorical codes random per row, continuous codes 0" if code.startswith("cat")
                 else "cat0 = row index mod its size, other continuous codes 0")
        manifest["files"].append({"file": png.name, "code": code, "kind": "grid", "epoch": ckpt["epoch"],
                                  "columns": values, "rows": f"{tc.rows} noise vectors", "fixed": other})
        if snapshot_gens:
            frames = [make_grid(render(sg, code, tc, device), len(values)) for _, sg in snapshot_gens]
            gif = out_dir / f"{code}_over_epochs.gif"
            save_gif(frames, gif, tc.gif_frame_ms)
            manifest["files"].append({"file": gif.name, "code": code, "kind": "gif_over_epochs",
                                      "epochs": [e for e, _ in snapshot_gens], "columns": values})
    atomic_write_json(out_dir / "manifest.json", manifest)
    return manifest
