"""The training loop: D's step, then G and Q's step (``infogan.objective``); a checkpoint every
epoch; resumable.

Run layout (``out_dir``):
  checkpoint.pt              latest full state (atomic), resumed by ``--resume``
  snapshots/generator_epoch_NNN.pt   G alone at snapshot epochs (for GIFs over training)
  grids/epoch_NNN.png, progress.gif  fixed-latent progress grids
  logs/steps.tsv, logs/epochs.json   per-step losses, per-epoch metrics
  wandb_run.json                     this training's W&B run id (resume continues it); see infogan.tracking
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import distributed
from .augment import Augment
from .checkpoint import changed_settings, select_device
from .config import InfoGANConfig
from .batches import training_batches
from .data import load_split
from .images import gif_from_pngs, make_grid, save_png
from .io import atomic_torch_save, atomic_write_json, remove_stale_temps, safe_load
from .machine import device_name, matmul_peak_gflops
from .latent import LatentBatch, LatentSpec
from .metrics import categorical_scores
from .nets import build_models
from .objective import Objective, StepContext
from .tracking import STEP_COLUMNS, RunLogger


def epoch_seed(seed: int, epoch: int) -> int:
    """RNG state depends only on (seed, epoch), so a resumed run repeats an uninterrupted one."""
    return (seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


def fixed_grid_latents(spec: LatentSpec, seed: int, columns: int = 10) -> tuple[LatentBatch, int]:
    """Rows are the values of the first categorical code; columns are fixed noise draws."""
    g = torch.Generator().manual_seed(seed + 424242)
    rows = min(spec.categorical[0], 20) if spec.categorical else 10
    base = spec.sample(columns, g)
    z, cat, cont = base.z.repeat(rows, 1), base.cat.repeat(rows, 1), base.cont.repeat(rows, 1)
    if spec.categorical:
        cat[:, 0] = torch.arange(rows).repeat_interleave(columns)
    return LatentBatch(z, cat, cont), columns


class StepStats:
    """Named step statistics summed on the device; read (one host sync) only when logged. Each is
    averaged over the steps that reported it (a lazy term reports on every N-th step)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for name, value in stats.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()
            self.counts[name] = self.counts.get(name, 0) + 1

    def means(self, dist: distributed.Dist) -> dict[str, float]:
        mean = torch.stack(list(self.sums.values())) / torch.tensor([float(self.counts[k]) for k in self.sums],
                                                                     device=next(iter(self.sums.values())).device)
        if dist.enabled:
            mean = distributed.average_tensor(mean, dist.world)
        values = dict(zip(self.sums, mean.tolist()))
        self.sums, self.counts = {}, {}
        return values


class Trainer:
    def __init__(self, cfg: InfoGANConfig, out_dir: str | Path, experiment: str | None = None):
        self.cfg, self.out = cfg, Path(out_dir)
        self.experiment = experiment or self.out.name  # the W&B group
        tc = cfg.train
        self.device = select_device(tc.device)
        self.dist = distributed.init(self.device.type)
        if self.dist.enabled:
            if tc.batch_size % self.dist.world:
                raise ValueError(f"train.batch_size ({tc.batch_size}) is the global batch and must divide evenly "
                                 f"over {self.dist.world} processes")
            if self.device.type == "cuda":
                self.device = torch.device("cuda", self.dist.local_rank)
                torch.cuda.set_device(self.device)
        if tc.threads:
            torch.set_num_threads(tc.threads)
        elif self.dist.enabled and self.device.type == "cpu":  # ranks share the machine's cores
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.dist.world))
        self.use_amp = tc.amp and self.device.type == "cuda"
        self.spec = LatentSpec.from_config(cfg.latent)
        torch.manual_seed(tc.seed)
        self.batches, channels = training_batches(cfg, self.device)
        self.G, self.D = build_models(cfg, channels)
        if self.dist.enabled and self.device.type == "cuda":
            # D's batch statistics over the global batch, as in single-process training. (CPU
            # SyncBatchNorm does not exist: there each rank normalises over its own slice.)
            self.G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
            self.D = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.D)
        self.G.to(self.device)
        self.D.to(self.device)
        if self.dist.enabled:
            distributed.broadcast_module(self.G)
            distributed.broadcast_module(self.D)
        betas = (tc.beta1, tc.beta2)
        self.opt_d = torch.optim.Adam(list(self.D.body.parameters()) + list(self.D.d_head.parameters()),
                                      lr=tc.lr_d, betas=betas)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=tc.lr_g, betas=betas)
        self.opt_q = torch.optim.Adam(self.D.q_head.parameters(), lr=tc.lr_q, betas=betas)
        self.objective = Objective(tc, self.spec)
        self.augment = Augment.from_config(tc.augment)
        self.test = load_split(cfg.data, "test") if tc.eval_each_epoch and self.dist.main else None
        if self.test is not None and (self.test.labels < 0).all():
            self.test = None
        self.epoch = self.step = self.images_seen = 0
        self.history: list[dict] = []
        # Compiled views share parameters with the modules, so state_dict keys stay plain.
        self._gen = torch.compile(self.G) if tc.compile else self.G
        self._body = torch.compile(self.D.body) if tc.compile else self.D.body

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {"format": 1, "generator_args": self.G.ctor_args, "discriminator_args": self.D.ctor_args,
                "latent": self.spec.to_dict(), "config": self.cfg.model_dump(mode="json"),
                "generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
                "opt_d": self.opt_d.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_q": self.opt_q.state_dict(),
                "epoch": self.epoch, "step": self.step, "images_seen": self.images_seen, "history": self.history}

    def load_state(self, ckpt: dict) -> None:
        self.G.load_state_dict(ckpt["generator"])
        self.D.load_state_dict(ckpt["discriminator"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_q.load_state_dict(ckpt["opt_q"])
        self.epoch, self.step, self.images_seen = ckpt["epoch"], ckpt["step"], ckpt["images_seen"]
        self.history = list(ckpt["history"])

    # ------------------------------------------------------------------ one iteration
    def context(self, real: torch.Tensor) -> StepContext:
        return StepContext(self.spec, self.spec.sample_on_device(real.shape[0], self.device), real, self.epoch + 1,
                           self.step, self._body, self.D.d_head, self.D.q_head, self._gen, self.augment,
                           self.cfg.train.info_grad == "shared")

    def _average_gradients(self, params) -> None:
        if self.dist.enabled:
            distributed.average_gradients(list(params), self.dist.world)

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """One iteration of the paper's two phases; returns named statistics (on the device)."""
        ctx = self.context(real)
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp)
        with amp:
            ctx.fake = self._gen(self.spec.assemble(ctx.codes))

        # D's step (and Q's, through the shared body when info_grad is "shared")
        self.opt_d.zero_grad(set_to_none=True)
        self.opt_q.zero_grad(set_to_none=True)
        with amp:
            loss_d, stats = self.objective.discriminator_phase(ctx)
        loss_d.backward()
        self._average_gradients(self.D.parameters())
        self.opt_d.step()

        # G and Q's step
        self.opt_g.zero_grad(set_to_none=True)
        with amp:
            loss_g, g_stats = self.objective.generator_phase(ctx)
        loss_g.backward()
        self._average_gradients(list(self.G.parameters()) + list(self.D.q_head.parameters()))
        self.opt_g.step()
        self.opt_q.step()
        return stats | g_stats

    # ------------------------------------------------------------------ epoch-level outputs
    def evaluate_epoch(self) -> dict:
        if self.test is None or not self.spec.categorical:
            return {}
        n_cal = self.cfg.evaluate.bn_calibration_images
        calibration = self.batches.images[:n_cal] if n_cal and hasattr(self.batches, "images") else None
        scores = categorical_scores(self.spec, self.D, self.test.images, self.test.labels, self.device,
                                    calibration_uint8=calibration)
        return {k: scores[0][k] for k in ("accuracy", "nmi", "used_values")} | {
            "confusions": {f"{c['label']}->{c['read_as']}": c["images"] for c in scores[0]["confusions"][:3]}}

    @torch.no_grad()
    def render_grid(self, epoch: int) -> Path:
        latents, ncol = fixed_grid_latents(self.spec, self.cfg.train.seed)
        self.G.eval()
        images = self.G(self.spec.assemble(latents.to(self.device)))
        self.G.train()
        path = self.out / "grids" / f"epoch_{epoch:03d}.png"
        save_png(make_grid(images, ncol), path)
        gif_from_pngs(sorted((self.out / "grids").glob("epoch_*.png")), self.out / "progress.gif",
                      self.cfg.traverse.gif_frame_ms)
        return path

    def save_snapshot(self, epoch: int) -> None:
        atomic_torch_save({"generator_args": self.G.ctor_args, "generator": self.G.state_dict(), "epoch": epoch},
                          self.out / "snapshots" / f"generator_epoch_{epoch:03d}.pt")

    def step_row(self, epoch: int, means: dict[str, float]) -> dict:
        h_cat, h_cont = self.spec.entropy_categorical, self.spec.entropy_continuous
        row = {"step": self.step, "epoch": epoch, "images": self.images_seen,
               "mi_cat": h_cat - means["info_cat_nll"], "h_cat": h_cat,
               "mi_cont": h_cont - means["info_cont_nll"], "h_cont": h_cont} | means
        return {k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}

    # ------------------------------------------------------------------ the loop
    def _start(self, resume: bool, ckpt_path: Path) -> bool:
        """Load the checkpoint when it may be resumed; else clear an earlier run's outputs."""
        for folder in (self.out, self.out / "snapshots", self.out / "logs", self.out / "grids") if self.dist.main else ():
            remove_stale_temps(folder)  # an interrupted write's leftovers (they would change DVC's hashes)
        ckpt = safe_load(ckpt_path, map_location=self.device) if resume and ckpt_path.exists() else None
        changed = changed_settings(ckpt["config"], self.cfg.model_dump(mode="json")) if ckpt else []
        if changed:
            print(f"[train] not resuming {ckpt_path}: it was trained with other settings "
                  f"({', '.join(changed)}); starting afresh", flush=True)
        if ckpt is not None and not changed:
            self.load_state(ckpt)
            return True
        if ckpt_path.exists() and self.dist.main:  # stale outputs must not mix into this run
            for stale in [ckpt_path, self.out / "progress.gif"]:
                stale.unlink(missing_ok=True)
            for folder in ("grids", "snapshots"):
                for f in (self.out / folder).glob("*"):
                    f.unlink()
        return False

    def _train_epoch(self, epoch: int) -> tuple[list[dict], float]:
        tc, main = self.cfg.train, self.dist.main
        data_gen = torch.Generator().manual_seed(epoch_seed(tc.seed, epoch))
        torch.manual_seed(epoch_seed(tc.seed, epoch) + 1 + 7777 * self.dist.rank)
        self.objective.reset_stats()
        rows, window, t0 = [], StepStats(), time.perf_counter()
        bar = tqdm(self.batches.epoch(data_gen, self.dist.rank, self.dist.world), total=len(self.batches),
                   desc=f"epoch {epoch}/{tc.epochs}", disable=not tc.progress_bar or not main, mininterval=1.0,
                   leave=False, dynamic_ncols=True)
        for i, real in enumerate(bar):
            window.add(self.train_step(real))
            self.step += 1
            self.images_seen += real.shape[0] * self.dist.world
            if self.step % tc.log_every == 0 or i + 1 == len(self.batches):
                rows.append(self.step_row(epoch, window.means(self.dist)))
                bar.set_postfix(D=f"{rows[-1]['loss_d']:.3f}", G=f"{rows[-1]['loss_g']:.3f}",
                                L_I=f"{rows[-1]['mi_cat']:.3f}/{rows[-1]['h_cat']:.3f}")
        bar.close()
        return rows, time.perf_counter() - t0

    def fit(self, resume: bool = False, stop_after_epochs: int | None = None) -> dict:
        tc, main = self.cfg.train, self.dist.main
        ckpt_path = self.out / "checkpoint.pt"
        self.out.mkdir(parents=True, exist_ok=True)
        resumed = self._start(resume, ckpt_path)
        distributed.barrier(self.dist)
        columns = STEP_COLUMNS + [t.name for t in self.objective.terms]
        # The one writer of logs/steps.tsv and logs/epochs.json, and the one sender to W&B.
        logger = RunLogger(self.out, self.cfg, self.experiment).start(resumed, self.epoch, columns,
                                                                  self.history) if main else None
        snapshot_epochs = set(tc.snapshot_epochs) | {tc.epochs}
        last_epoch = tc.epochs if stop_after_epochs is None else min(tc.epochs, self.epoch + stop_after_epochs)
        self.G.train()
        self.D.train()
        failed, first_epoch = True, self.epoch
        elapsed = self.history[-1].get("elapsed_s", 0.0) if self.history else 0.0
        machine = {"matmul_peak_gflops": round(matmul_peak_gflops(self.device, reps=3), 1),
                   "device_name": device_name(self.device)} if main else {}
        try:
            for epoch in range(self.epoch + 1, last_epoch + 1):
                started = time.perf_counter()
                rows, seconds = self._train_epoch(epoch)
                self.epoch = epoch
                if self.dist.enabled:
                    distributed.check_in_sync([self.G, self.D])
                if not main:  # rank 0 evaluates and writes; the others wait for it
                    distributed.barrier(self.dist)
                    continue
                record = {"epoch": epoch, "step": self.step, "images_seen": self.images_seen,
                          "seconds": round(seconds, 3),
                          "images_per_s": round(len(self.batches) * tc.batch_size / seconds, 1),
                          "mi_cat": rows[-1]["mi_cat"] if rows else None, "h_cat": self.spec.entropy_categorical}
                record.update(self.objective.epoch_stats())  # this rank's epoch means, per term
                record.update(self.evaluate_epoch())
                grid = None
                if epoch in snapshot_epochs:
                    grid = self.render_grid(epoch)
                    self.save_snapshot(epoch)
                elapsed += time.perf_counter() - started
                record["elapsed_s"] = round(elapsed, 3)  # wall seconds of training so far, resumes summed
                record.update(machine)  # of the machine this epoch trained on, to compare speeds by
                self.history.append(record)
                logger.log_steps(rows)  # steps.tsv + W&B
                logger.log_epoch(record, self.history, grid)  # epochs.json + W&B
                atomic_torch_save(self.state(), ckpt_path)  # last: the epoch counts only once all is written
                print("[train] " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in record.items()), flush=True)
                distributed.barrier(self.dist)
            if main and last_epoch > first_epoch:  # the checkpoint changed: a new version of the model artifact
                logger.log_model(ckpt_path, {"epoch": self.epoch, "step": self.step, "images_seen": self.images_seen,
                                             "final": self.history[-1]})
            failed = False
        finally:
            if logger is not None:
                logger.finish(failed=failed)
        return {"epochs": self.epoch, "steps": self.step, "images_seen": self.images_seen, "history": self.history,
                "device": str(self.device), "checkpoint": str(ckpt_path)}


def train(cfg: InfoGANConfig, out_dir: str | Path, resume: bool = False,
          stop_after_epochs: int | None = None, experiment: str | None = None) -> dict:
    trainer = Trainer(cfg, out_dir, experiment)
    try:
        summary = trainer.fit(resume=resume, stop_after_epochs=stop_after_epochs)
    finally:
        distributed.shutdown(trainer.dist)
    if not trainer.dist.main:
        return summary
    atomic_write_json(Path(out_dir) / "train_summary.json",
                      {k: v for k, v in summary.items() if k != "history"} | {"final": summary["history"][-1]})
    return summary
