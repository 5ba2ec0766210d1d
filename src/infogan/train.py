"""The training loop: D step, then G+Q step; checkpoint every epoch; resumable.

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

from . import distributed, losses
from .attributes import axis_nearer_horizontal
from .config import InfoGANConfig
from .data import load_split, training_batches
from .images import gif_from_pngs, make_grid, save_png
from .io import atomic_torch_save, atomic_write_json, safe_load
from .latent import LatentBatch, LatentSpec
from .metrics import categorical_scores
from .nets import build_models
from .tracking import STEP_COLUMNS, RunLogger  # noqa: F401 (STEP_COLUMNS: re-exported)


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is visible; use device: auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("train.device is 'mps' but MPS is not available; use device: auto")
    return torch.device(name)


def epoch_seed(seed: int, epoch: int) -> int:
    """RNG state depends only on (seed, epoch), so a resumed run repeats an uninterrupted one."""
    return (seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


def fixed_grid_latents(spec: LatentSpec, seed: int, columns: int = 10) -> tuple[LatentBatch, int]:
    """Rows are the values of the first categorical code; columns are fixed noise draws."""
    g = torch.Generator().manual_seed(seed + 424242)
    rows = min(spec.categorical[0], 20) if spec.categorical else 10
    base = spec.sample(columns, g)
    z = base.z.repeat(rows, 1)
    cat = base.cat.repeat(rows, 1)
    cont = base.cont.repeat(rows, 1)
    if spec.categorical:
        cat[:, 0] = torch.arange(rows).repeat_interleave(columns)
    return LatentBatch(z, cat, cont), columns


class Trainer:
    def __init__(self, cfg: InfoGANConfig, out_dir: str | Path, experiment: str | None = None):
        self.cfg = cfg
        self.out = Path(out_dir)
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
        body_and_d = list(self.D.body.parameters()) + list(self.D.d_head.parameters())
        betas = (tc.beta1, tc.beta2)
        self.opt_d = torch.optim.Adam(body_and_d, lr=tc.lr_d, betas=betas)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=tc.lr_g, betas=betas)
        self.opt_q = torch.optim.Adam(self.D.q_head.parameters(), lr=tc.lr_q, betas=betas)
        self.test = load_split(cfg.data, "test") if tc.eval_each_epoch and self.dist.main else None
        if self.test is not None and (self.test.labels < 0).all():
            self.test = None
        self.epoch = 0
        self.step = 0
        self.images_seen = 0
        self.history: list[dict] = []
        self._reset_cross_slopes()
        # Compiled views share parameters with the modules, so state_dict keys stay plain.
        self._gen = torch.compile(self.G) if tc.compile else self.G
        self._body = torch.compile(self.D.body) if tc.compile else self.D.body

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {
            "format": 1,
            "generator_args": self.G.ctor_args,
            "discriminator_args": self.D.ctor_args,
            "latent": self.spec.to_dict(),
            "config": self.cfg.model_dump(mode="json"),
            "generator": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_q": self.opt_q.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "images_seen": self.images_seen,
            "history": self.history,
        }

    def load_state(self, ckpt: dict) -> None:
        self.G.load_state_dict(ckpt["generator"])
        self.D.load_state_dict(ckpt["discriminator"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_q.load_state_dict(ckpt["opt_q"])
        self.epoch, self.step, self.images_seen = ckpt["epoch"], ckpt["step"], ckpt["images_seen"]
        self.history = list(ckpt["history"])

    # ------------------------------------------------------------------ one iteration
    def _info_weighted(self, terms: losses.InfoTerms) -> torch.Tensor:
        tc = self.cfg.train
        return tc.lambda_cat * terms.cat_nll + tc.lambda_cont * terms.cont_nll

    def _probe(self, terms: losses.InfoTerms) -> torch.Tensor:
        """Codes whose lambda is 0 still train Q's head (never G or D's body), so L_I
        measures what a plain GAN's codes carry (the paper's Figure 1 ablation)."""
        tc = self.cfg.train
        zero = terms.cat_nll.new_zeros(())
        return ((terms.cat_nll if tc.lambda_cat == 0 else zero)
                + (terms.cont_nll if tc.lambda_cont == 0 else zero))

    def _real_continuous_roles(self, real: torch.Tensor) -> torch.Tensor:
        """Half the real batch, two views each: both slanted (first half; sheared, rotated, or
        either as the digit's axis lies, TrainConfig.roles_slant_by) or both stretched by known
        random amounts; squared error of the change in Q's codes 0 and 1 between the views
        against the change in slant and stretch, in code units (TrainConfig.real_cont_roles).
        Both views are resampled, so Q cannot tell them apart by blur."""
        tc = self.cfg.train
        x = real[: max(2, real.shape[0] // 2)]
        n, dev = x.shape[0], x.device
        units = (torch.rand(2, n, device=dev) * 2 - 1) * tc.roles_warp_units
        slanted = (torch.arange(n, device=dev) < n // 2).expand(2, n)
        none = torch.zeros_like(units)
        slant_units, stretch_units = torch.where(slanted, units, none), torch.where(slanted, none, units)
        slant, stretch = slant_units.flatten(), stretch_units.flatten() * tc.roles_stretch_per_unit
        shear, radians = slant * tc.roles_shear_per_unit, torch.deg2rad(slant * tc.roles_degrees_per_unit)
        if tc.roles_slant_by == "shear":
            views = losses.slant_stretch(x.repeat(2, 1, 1, 1), shear, stretch)
        else:
            rotated = torch.ones_like(slant, dtype=torch.bool)
            if tc.roles_slant_by == "axis":
                rotated = axis_nearer_horizontal(x).repeat(2)
            views = losses.slant_stretch(x.repeat(2, 1, 1, 1), torch.where(rotated, 0.0, shear), stretch,
                                         radians=torch.where(rotated, radians, 0.0))
        h = self._body(views)
        if tc.info_grad != "shared":
            h = h.detach()
        _, mean, _ = self.spec.split_q(self.D.q_head(h).float())
        change = mean[:, :2].unflatten(0, (2, n)).diff(dim=0).squeeze(0)
        target = torch.stack([slant_units[1] - slant_units[0], stretch_units[1] - stretch_units[0]], 1)
        return ((change - target) ** 2).mean(0).sum()

    def _reset_cross_slopes(self) -> None:
        """Start the epoch's running sum of cont_purity's measured slopes (logged as cross_slopes)."""
        self.cross_slopes_sum, self.cross_slopes_n = torch.zeros(4, device=self.device), 0

    def train_step(self, real: torch.Tensor) -> torch.Tensor:
        tc, spec, body = self.cfg.train, self.spec, self._body
        n = real.shape[0]
        codes = spec.sample_on_device(n, self.device)
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp)
        with amp:
            fake = self._gen(spec.assemble(codes))

        # ---- D step (and Q, through the shared body when info_grad == "shared")
        self.opt_d.zero_grad(set_to_none=True)
        self.opt_q.zero_grad(set_to_none=True)
        with amp:
            h_real = body(real)
            h_fake = body(fake.detach())
            adv_d = losses.d_loss(self.D.d_head(h_real).squeeze(1), self.D.d_head(h_fake).squeeze(1))
            loss_d = adv_d
            if tc.info_grad == "shared":
                loss_d = loss_d + self._info_weighted(losses.info_nll(spec, self.D.q_head(h_fake), codes))
            if tc.real_info > 0 and tc.lambda_cat > 0 and spec.categorical:
                h_for_q = h_real if tc.info_grad == "shared" else h_real.detach()
                if tc.real_pairs:
                    warped_real = losses.random_affine(real, tc.warp_degrees, tc.warp_scale, tc.warp_shift)
                    if tc.warp_stroke:
                        warped_real = losses.random_stroke(warped_real)
                    h_warped = body(warped_real)
                    h_warped = h_warped if tc.info_grad == "shared" else h_warped.detach()
                    loss_d = loss_d + tc.real_info * losses.paired_code_information_gap(
                        spec, self.D.q_head(h_for_q), self.D.q_head(h_warped))
                else:
                    loss_d = loss_d + tc.real_info * losses.real_code_entropy_gap(spec, self.D.q_head(h_for_q))
            if tc.real_cont_roles > 0 and tc.lambda_cont > 0:
                loss_d = loss_d + tc.real_cont_roles * self._real_continuous_roles(real)
            if tc.lambda_cat == 0 or tc.lambda_cont == 0:
                loss_d = loss_d + self._probe(losses.info_nll(spec, self.D.q_head(h_fake.detach()), codes))
        loss_d.backward()
        if self.dist.enabled:
            distributed.average_gradients(self.D.parameters(), self.dist.world)
        self.opt_d.step()

        # ---- G + Q step
        self.opt_g.zero_grad(set_to_none=True)
        with amp:
            h = body(fake)
            adv = losses.g_loss(self.D.d_head(h).squeeze(1))
            terms = losses.info_nll(spec, self.D.q_head(h), codes)
            loss_g = adv + self._info_weighted(terms)
            if tc.lambda_cat_warped > 0 and tc.lambda_cat > 0 and spec.categorical:
                warped = losses.random_affine(fake, tc.warp_degrees, tc.warp_scale, tc.warp_shift)
                if tc.warp_stroke:
                    warped = losses.random_stroke(warped)
                warped_terms = losses.info_nll(spec, self.D.q_head(body(warped)), codes)
                loss_g = loss_g + tc.lambda_cat_warped * warped_terms.cat_nll
            if tc.cont_purity > 0 and tc.lambda_cont > 0 and self.epoch + 1 >= tc.cont_purity_from_epoch:
                halves = losses.continuous_cross_slopes(self._gen, spec, codes, tc.cont_purity_pairs)
                loss_g = loss_g + tc.cont_purity * (halves[0, :3] * halves[1, :3]).sum()
                # Off (or not yet on): only logged, so no 0 x (a flat digit's NaN turn gradient) reaches G.
                if tc.slant_turn_charge > 0 and self.epoch + 1 >= tc.slant_turn_from_epoch:
                    loss_g = loss_g + tc.slant_turn_charge * halves[:, 3].mean()
                self.cross_slopes_sum += halves.detach().mean(0)
                self.cross_slopes_n += 1
        loss_g.backward()
        if self.dist.enabled:
            distributed.average_gradients(list(self.G.parameters()) + list(self.D.q_head.parameters()),
                                          self.dist.world)
        self.opt_g.step()
        self.opt_q.step()
        return torch.stack([adv_d.detach().float(), adv.detach().float(),
                            terms.cat_nll.detach(), terms.cont_nll.detach()])

    # ------------------------------------------------------------------ epoch-level outputs
    def evaluate_epoch(self) -> dict:
        if self.test is None or not self.spec.categorical:
            return {}
        n_cal = self.cfg.evaluate.bn_calibration_images
        calibration = self.batches.images[:n_cal] if n_cal and hasattr(self.batches, "images") else None
        scores = categorical_scores(self.spec, self.D, self.test.images, self.test.labels, self.device,
                                    calibration_uint8=calibration)
        return {"accuracy": scores[0]["accuracy"], "nmi": scores[0]["nmi"],
                "used_values": scores[0]["used_values"]}

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

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False, stop_after_epochs: int | None = None) -> dict:
        tc = self.cfg.train
        ckpt_path = self.out / "checkpoint.pt"
        self.out.mkdir(parents=True, exist_ok=True)
        ckpt = safe_load(ckpt_path, map_location=self.device) if resume and ckpt_path.exists() else None
        changed = changed_settings(ckpt["config"], self.cfg.model_dump(mode="json")) if ckpt else []
        if changed:
            print(f"[train] not resuming {ckpt_path}: it was trained with other settings "
                  f"({', '.join(changed)}); starting afresh", flush=True)
        resumed = ckpt is not None and not changed
        main = self.dist.main
        if resumed:
            self.load_state(ckpt)
        elif ckpt_path.exists() and main:
            # Fresh start: stale outputs of an earlier run must not mix into this one (the logger
            # starts logs/ afresh below).
            for stale in [ckpt_path, self.out / "progress.gif"]:
                stale.unlink(missing_ok=True)
            for folder in ("grids", "snapshots"):
                for f in (self.out / folder).glob("*"):
                    f.unlink()
        # The one writer of logs/steps.tsv and logs/epochs.json, and the one sender to W&B.
        distributed.barrier(self.dist)
        logger = RunLogger(self.out, self.cfg, self.experiment).start(resume=resumed, epoch=self.epoch) if main else None

        h_cat, h_cont = self.spec.entropy_categorical, self.spec.entropy_continuous
        snapshot_epochs = set(tc.snapshot_epochs) | {tc.epochs}
        last_epoch = tc.epochs if stop_after_epochs is None else min(tc.epochs, self.epoch + stop_after_epochs)
        self.G.train()
        self.D.train()
        failed, first_epoch = True, self.epoch
        try:
            for epoch in range(self.epoch + 1, last_epoch + 1):
                data_gen = torch.Generator().manual_seed(epoch_seed(tc.seed, epoch))
                torch.manual_seed(epoch_seed(tc.seed, epoch) + 1 + 7777 * self.dist.rank)
                rows: list[list] = []
                window = torch.zeros(4, device=self.device)
                window_n = 0
                self._reset_cross_slopes()
                t0 = time.perf_counter()
                bar = tqdm(self.batches.epoch(data_gen, self.dist.rank, self.dist.world), total=len(self.batches),
                           desc=f"epoch {epoch}/{tc.epochs}", disable=not tc.progress_bar or not main, mininterval=1.0, leave=False, dynamic_ncols=True)
                for real in bar:
                    window += self.train_step(real)
                    window_n += 1
                    self.step += 1
                    self.images_seen += real.shape[0] * self.dist.world
                    if self.step % tc.log_every == 0 or window_n == len(self.batches):
                        mean = window / window_n
                        if self.dist.enabled:
                            mean = distributed.average_tensor(mean, self.dist.world)
                        d, g, cat_nll, cont_nll = mean.tolist()  # the only host sync
                        rows.append([self.step, epoch, self.images_seen, round(d, 5), round(g, 5), round(cat_nll, 5),
                                     round(cont_nll, 5), round(h_cat - cat_nll, 5), round(h_cat, 5),
                                     round(h_cont - cont_nll, 5), round(h_cont, 5)])
                        bar.set_postfix(D=f"{d:.3f}", G=f"{g:.3f}", L_I=f"{h_cat - cat_nll:.3f}/{h_cat:.3f}")
                        window.zero_()
                        window_n = 0
                bar.close()
                seconds = time.perf_counter() - t0
                self.epoch = epoch
                if not main:  # rank 0 evaluates and writes; the others wait for it
                    distributed.barrier(self.dist)
                    continue
                record = {"epoch": epoch, "step": self.step, "images_seen": self.images_seen,
                          "seconds": round(seconds, 3),
                          "images_per_s": round(len(self.batches) * tc.batch_size / seconds, 1),
                          "mi_cat": rows[-1][7] if rows else None, "h_cat": h_cat}
                if self.cross_slopes_n:  # this rank's epoch means (cont_purity)
                    width, sharp_width, angle, against = (self.cross_slopes_sum / self.cross_slopes_n).tolist()
                    record["cross_slopes"] = {"slant_code_log_width": round(width, 5),
                                              "slant_code_log_width_sharp": round(sharp_width, 5),
                                              "width_code_angle": round(angle, 5)}
                    if tc.slant_turn_charge > 0:
                        record["cross_slopes"]["slant_code_turn_against"] = round(against, 5)
                record.update(self.evaluate_epoch())
                self.history.append(record)
                grid = None
                if epoch in snapshot_epochs:
                    grid = self.render_grid(epoch)
                    self.save_snapshot(epoch)
                logger.log_steps(rows)  # steps.tsv + W&B
                logger.log_epoch(record, self.history, grid)  # epochs.json + W&B
                atomic_torch_save(self.state(), ckpt_path)  # last: the epoch counts only once all is written
                msg = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
                print(f"[train] {msg}", flush=True)
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


# Settings a run may change and still resume: how long, where the data comes from (the files
# themselves are pinned by SHA-256), and what is logged, tracked or rendered.
RESUMABLE_CHANGES = {"train.epochs", "train.snapshot_epochs", "train.log_every", "train.progress_bar",
                     "train.eval_each_epoch", "train.threads", "train.device", "train.nproc",
                     "data.local_dirs", "data.download", "data.fetch_order", "data.download_dir",
                     "data.download_timeout_s", "data.num_workers", "data.verify_checksums", "data.prepared_dir",
                     "evaluate", "traverse", "tracking"}


def changed_settings(saved: dict, current: dict, prefix: str = "", defaults: dict | None = None) -> list[str]:
    """Keys (dotted) whose values differ between a checkpoint's config and the current one,
    ignoring RESUMABLE_CHANGES. A key the checkpoint predates counts as unchanged while the
    current value is that key's default."""
    if defaults is None:
        defaults = InfoGANConfig().model_dump(mode="json")
    changed = []
    for key in sorted(set(saved) | set(current)):
        dotted = f"{prefix}{key}"
        if dotted in RESUMABLE_CHANGES:
            continue
        a, b, default = saved.get(key), current.get(key), (defaults or {}).get(key)
        if key not in saved and b == default:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            changed += changed_settings(a, b, f"{dotted}.", default if isinstance(default, dict) else {})
        elif a != b:
            changed.append(dotted)
    return changed


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


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: run `python -m infogan train` first")
    return safe_load(path, map_location)

