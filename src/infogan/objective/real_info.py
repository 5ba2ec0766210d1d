"""``real_info``: Q must use the categorical code on real images as the prior does.

H(c) - I(x_real; c_hat) on a real batch: Q spreads real images over the code values as the
uniform prior does (when G matches the data, the average of Q(c|x) over real x equals p(c))
and is confident on each, so one value cannot claim two classes while another splits one.
With ``pairs`` it is measured on (real, augmented real) pairs, H(c) - I(c_hat(x);
c_hat(aug(x))), so Q must also read the same value from both (IIC-style; no labels).
"""
from __future__ import annotations

import math

import torch
from pydantic import Field

from ..latent import LatentSpec
from .base import StepContext, Term, TermConfig, register


def real_code_entropy_gap(spec: LatentSpec, q_out_real: torch.Tensor) -> torch.Tensor:
    """Sum over categorical codes of KL(mean_x Q(c|x) || uniform) + mean_x H(Q(c|x)): zero iff
    Q assigns real images confidently and the batch's code usage matches the uniform prior."""
    logits, _, _ = spec.split_q(q_out_real.float())
    total = q_out_real.new_zeros((), dtype=torch.float32)
    for k, lg in zip(spec.categorical, logits):
        log_p = lg.log_softmax(1)
        p = log_p.exp()
        marginal = p.mean(0)
        balance = (marginal * (marginal.clamp_min(1e-12) * k).log()).sum()
        confidence = -(p * log_p).sum(1).mean()
        total = total + balance + confidence
    return total


def paired_code_information_gap(spec: LatentSpec, q_out_a: torch.Tensor, q_out_b: torch.Tensor) -> torch.Tensor:
    """Sum over categorical codes of H(c) - I(c_hat(x); c_hat(x')) on a batch of pairs: the
    joint of the two predictions is estimated from the batch (symmetrised)."""
    la, _, _ = spec.split_q(q_out_a.float())
    lb, _, _ = spec.split_q(q_out_b.float())
    total = q_out_a.new_zeros((), dtype=torch.float32)
    for k, a, b in zip(spec.categorical, la, lb):
        total = total + math.log(k) - paired_information(a.softmax(1), b.softmax(1))
    return total


def paired_information(p_a: torch.Tensor, p_b: torch.Tensor) -> torch.Tensor:
    """I(c_hat(x); c_hat(x')) in nats from the (n, k) code probabilities of n pairs (x, x'): the
    joint of the two readings estimated over the pairs, symmetrised."""
    joint = p_a.t() @ p_b / p_a.shape[0]
    joint = ((joint + joint.t()) / 2).clamp_min(1e-12)
    pi, pj = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    return (joint * (joint.log() - pi.log() - pj.log())).sum()


class RealInfoConfig(TermConfig):
    pairs: bool = Field(False, description="measure it on (real, augmented real) pairs (train.augment)")


@register
class RealInfo(Term):
    """H(c) - I(x_real; c_hat) on real batches: Q spreads real images over the code values as the
    prior does and is confident on each; with ``pairs``, also reads one value from an image and its
    augmented copy (IIC-style)."""

    name = "real_info"
    phase = "D"
    code_kind = "categorical"
    Config = RealInfoConfig

    def loss(self, ctx: StepContext) -> torch.Tensor:
        if not self.cfg.pairs:
            return self.cfg.weight * real_code_entropy_gap(self.spec, ctx.q_on_real(ctx.h_real))
        h_augmented = ctx.body(ctx.augment(ctx.real))
        return self.cfg.weight * paired_code_information_gap(self.spec, ctx.q_on_real(ctx.h_real),
                                                             ctx.q_on_real(h_augmented))
