"""``warped_info``: the categorical code must survive augmentation of G's samples.

The categorical information term measured again on G's samples after a random warp
(``train.augment``): the category cannot settle on what the warp changes (angle, size,
position, stroke) instead of what it keeps. No labels are used.
"""
from __future__ import annotations

import torch

from .base import StepContext, Term, register
from .information import info_nll


@register
class WarpedInfo(Term):
    """The categorical information term again on G's samples after a random warp
    (``train.augment``): the category must survive it."""

    name = "warped_info"
    phase = "G"
    code_kind = "categorical"

    def loss(self, ctx: StepContext) -> torch.Tensor:
        q_out = ctx.q_head(ctx.body(ctx.augment(ctx.fake)))
        return self.cfg.weight * info_nll(self.spec, q_out, ctx.codes).cat_nll
