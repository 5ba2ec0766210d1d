"""Objective terms that give continuous codes 0 and 1 the roles slant and width (no labels).

The paper's objective leaves the axes of a 2-d continuous code free, so which mixture of
slant and width each code takes varies by seed. ``digit_roles`` fixes them on real digits,
which cannot bend to suit Q as G's samples can; ``role_purity`` then charges G for moving the
other role's attribute along a code.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field

from ...attributes import ink
from ...latent import LatentBatch, LatentSpec
from ...objective import StepContext, Term, TermConfig, register, sub_batch_size
from .geometry import digit_moments, slant_stretch


def _needs_two_codes(name: str, config) -> None:
    if config.latent.continuous < 2:
        raise ValueError(f"train.objective.{name} needs latent.continuous >= 2 (code 0 = slant, code 1 = width), "
                         f"got {config.latent.continuous}; set its weight to 0 or add codes")


class DigitRolesConfig(TermConfig):
    shear_per_unit: float = Field(0.5, gt=0, le=2, description="horizontal shear of a real view per code unit")
    stretch_per_unit: float = Field(0.25, gt=0, le=2, description="log horizontal stretch per code unit")
    warp_units: float = Field(0.5, gt=0, le=2, description="each view is warped by up to this many code units")


@register
class DigitRoles(Term):
    """Half the real batch, two views each: both sheared (first half) or both stretched by known
    random amounts; Q's change in code 0 (code 1) between the views must equal the change in
    shear (log-stretch) in code units, the other code's reading not at all. Squared error, in
    D's step. Both views are resampled, so Q cannot tell them apart by blur."""

    name = "digit_roles"
    phase = "D"
    code_kind = "continuous"
    Config = DigitRolesConfig

    @classmethod
    def check(cls, cfg, config) -> None:
        _needs_two_codes(cls.name, config)

    def loss(self, ctx: StepContext) -> torch.Tensor:
        c = self.cfg
        x = ctx.real[: max(2, ctx.real.shape[0] // 2)]
        n, dev = x.shape[0], x.device
        units = (torch.rand(2, n, device=dev) * 2 - 1) * c.warp_units
        sheared = (torch.arange(n, device=dev) < n // 2).expand(2, n)
        none = torch.zeros_like(units)
        shear_units, stretch_units = torch.where(sheared, units, none), torch.where(sheared, none, units)
        views = slant_stretch(x.repeat(2, 1, 1, 1), shear_units.flatten() * c.shear_per_unit,
                              stretch_units.flatten() * c.stretch_per_unit)
        _, mean, _ = self.spec.split_q(ctx.q_on_real(ctx.body(views)).float())
        change = mean[:, :2].unflatten(0, (2, n)).diff(dim=0).squeeze(0)
        target = torch.stack([shear_units[1] - shear_units[0], stretch_units[1] - stretch_units[0]], 1)
        return c.weight * ((change - target) ** 2).mean(0).sum()


def cross_slopes(generate, spec: LatentSpec, codes: LatentBatch, pairs: int = 128,
                 keep: dict | None = None) -> torch.Tensor:
    """How much each role leaks into the other's attribute, as change per code unit: the
    deskewed log-width along code 0 (the slant code), on the ink and on a sharpened, near-binary
    ink (a digit widened with fainter outer strokes still counts), and the principal-axis angle
    in radians along code 1 (the width code). For ``pairs`` latents, code 0 (first half) or code
    1 (second half) moves by a random 0.25-1 units either way; both images of a pair come from
    one ``generate`` call, so they share G's batch statistics.

    Returns (2, 3): the slopes averaged over each of two disjoint halves of the moved latents.
    Their product is an unbiased estimate of the squared mean slope; the square of one batch
    mean would add its sampling variance, charging G for how differently single digits respond."""
    m = min(len(codes), pairs)
    half, dev = m // 2, codes.cont.device
    quarter = half // 2
    if quarter < 1:
        raise ValueError(f"cross_slopes needs at least 4 latents, got {m}")
    step = (torch.rand(m, device=dev) * 0.75 + 0.25) * torch.where(torch.rand(m, device=dev) < 0.5, -1.0, 1.0)
    moved = codes.cont[:m].clone()
    moved[:half, 0] += step[:half]
    moved[half:, 1] += step[half:]
    both = LatentBatch(codes.z[:m].repeat(2, 1), codes.cat[:m].repeat(2, 1), torch.cat([codes.cont[:m], moved]))
    x = ink(generate(spec.assemble(both)), keep_graph=True)

    def log_width_slope(moments):
        log_width = 0.5 * torch.log(moments["deskewed_cxx"] + 1e-3)
        return (log_width[m:m + half] - log_width[:half]) / step[:half]

    moments = digit_moments(x)
    if keep is not None:  # for slant_turn, which reads the same pairs
        keep.update(moments=moments, step=step, m=m, half=half, quarter=quarter)
    angle_slope = (moments["angle"][m + half:] - moments["angle"][half:m]) / step[half:]
    per_latent = torch.stack([log_width_slope(moments),
                              log_width_slope(digit_moments(torch.sigmoid((x - 0.5) * 12))), angle_slope])
    return torch.stack([per_latent[:, :quarter].mean(1), per_latent[:, quarter:2 * quarter].mean(1)])


class RolePurityConfig(TermConfig):
    from_epoch: int = Field(2, ge=1, description="first epoch (1-based) in which the term is active")
    pairs: int = Field(128, ge=4, le=4096, description="latents moved per step to measure the slopes")


@register
class RolePurity(Term):
    """Moving code 0 should leave G's deskewed width as it is, and moving code 1 its axis angle:
    the squared mean slopes of ``cross_slopes``, in G's step, once the codes have formed."""

    name = "role_purity"
    phase = "G"
    code_kind = "continuous"
    Config = RolePurityConfig
    STATS = ("slant_code_log_width", "slant_code_log_width_sharp", "width_code_angle")

    @classmethod
    def check(cls, cfg, config) -> None:
        _needs_two_codes(cls.name, config)
        per_process = config.train.batch_size // config.train.nproc
        if sub_batch_size(cfg, per_process) < 4:
            raise ValueError(f"train.objective.{cls.name} moves codes of at least 4 latents per step, but each "
                             f"process gets train.batch_size // train.nproc = {per_process}, of which it sees "
                             f"batch = {cfg.batch}; raise train.batch_size")

    def reset_stats(self) -> None:
        self._sum, self._n = None, 0

    def loss(self, ctx: StepContext) -> torch.Tensor:
        halves = cross_slopes(ctx.generate, self.spec, ctx.codes, self.cfg.pairs,
                              ctx.cache.setdefault("role_purity", {}))
        self._sum = halves.detach().mean(0) + (0 if self._sum is None else self._sum)
        self._n += 1
        return self.cfg.weight * (halves[0] * halves[1]).sum()

    def epoch_stats(self) -> dict[str, float]:
        if not self._n:
            return {}
        return {k: round(v, 5) for k, v in zip(self.STATS, (self._sum / self._n).tolist())}


class SlantTurnConfig(TermConfig):
    from_epoch: int = Field(4, ge=1, description="first epoch (1-based) in which the term is active")


@register
class SlantTurn(Term):
    """A shear turns a wide digit's axis the other way to a tall one's. This charges G, per latent
    of ``role_purity``'s moved pairs whose slant code moved, for an axis turn against the turn a
    positive shear gives an upright stroke (radians per code unit, weighted by how elongated the
    digit is: a round digit's axis is noise)."""

    name = "slant_turn"
    phase = "G"
    code_kind = "continuous"
    Config = SlantTurnConfig

    @classmethod
    def check(cls, cfg, config) -> None:
        purity = config.train.objective.get("role_purity")
        if purity is None or purity.weight == 0:
            raise ValueError("train.objective.slant_turn is measured on role_purity's moved latents; "
                             "switch role_purity on or set slant_turn's weight to 0")
        for key in ("every", "batch"):
            if getattr(cfg, key) != getattr(purity, key):
                raise ValueError(f"train.objective.slant_turn.{key} ({getattr(cfg, key)}) differs from "
                                 f"role_purity.{key} ({getattr(purity, key)}), whose moved latents it reads")
        if cfg.from_epoch < purity.from_epoch:
            raise ValueError(f"train.objective.slant_turn.from_epoch ({cfg.from_epoch}) is before "
                             f"role_purity.from_epoch ({purity.from_epoch}), whose latents it reads")

    def loss(self, ctx: StepContext) -> torch.Tensor:
        k = ctx.cache["role_purity"]
        moments, step, m, half, quarter = k["moments"], k["step"], k["m"], k["half"], k["quarter"]
        turn = moments["angle"][m:m + half] - moments["angle"][:half]
        turn_per_unit = (torch.remainder(turn + math.pi / 2, math.pi) - math.pi / 2) / step[:half]
        cxx, cxy, cyy = moments["cxx"][:half], moments["cxy"][:half], moments["cyy"][:half]
        elongation = (torch.hypot(cyy - cxx, 2 * cxy) / (cxx + cyy).clamp_min(1e-6)).detach()
        # A positive shear (x += s * y, rows growing downwards) turns an upright stroke to negative
        # angles, and digit_roles makes code 0 such a shear: a turn > 0 is against it.
        against = elongation * F.relu(turn_per_unit)
        return self.cfg.weight * torch.stack([against[:quarter].mean(), against[quarter:2 * quarter].mean()]).mean()
