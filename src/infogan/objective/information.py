"""The information term: L_I = H(c) + E[log Q(c|x)], a lower bound of I(c; G(z, c)).

For categorical codes E[log Q] is minus the cross-entropy; for continuous codes a factored
Gaussian log-likelihood. Training minimises the weighted negative log-likelihoods
(``lambda_cat``, ``lambda_cont``); L_I is reported beside H(c).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..latent import LatentBatch, LatentSpec

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class InfoTerms:
    cat_nll: torch.Tensor   # sum over categorical codes of mean cross-entropy (nats)
    cont_nll: torch.Tensor  # sum over continuous codes of mean Gaussian NLL (nats)


def info_nll(spec: LatentSpec, q_out: torch.Tensor, codes: LatentBatch) -> InfoTerms:
    logits, mean, log_std = spec.split_q(q_out.float())
    zero = q_out.new_zeros((), dtype=torch.float32)
    cat = sum((F.cross_entropy(lg, codes.cat[:, i]) for i, lg in enumerate(logits)), zero)
    if spec.continuous:
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        z = (codes.cont - mean) * torch.exp(-log_std)
        cont = (_HALF_LOG_2PI + log_std + 0.5 * z * z).mean(0).sum()
    else:
        cont = zero
    return InfoTerms(cat, cont)


def mutual_info_lower_bound(spec: LatentSpec, terms: InfoTerms) -> tuple[float, float]:
    """(L_I for categorical codes, L_I for continuous codes) in nats."""
    return (spec.entropy_categorical - float(terms.cat_nll),
            spec.entropy_continuous - float(terms.cont_nll))


class Information:
    """The weighted information term, and the probe that keeps Q learning when a lambda is 0."""

    def __init__(self, spec: LatentSpec, lambda_cat: float, lambda_cont: float):
        self.spec, self.lambda_cat, self.lambda_cont = spec, lambda_cat, lambda_cont

    def nll(self, q_out: torch.Tensor, codes: LatentBatch) -> InfoTerms:
        return info_nll(self.spec, q_out, codes)

    def weighted(self, terms: InfoTerms) -> torch.Tensor:
        return self.lambda_cat * terms.cat_nll + self.lambda_cont * terms.cont_nll

    def lambda_of(self, kind: str) -> float:
        return self.lambda_cat if kind == "categorical" else self.lambda_cont

    @property
    def probes(self) -> bool:
        return self.lambda_cat == 0 or self.lambda_cont == 0

    def probe(self, terms: InfoTerms) -> torch.Tensor:
        """Codes whose lambda is 0 still train Q's head (on detached features: never G or D's
        body), so L_I measures what a plain GAN's codes carry (the paper's Figure 1 ablation)."""
        zero = terms.cat_nll.new_zeros(())
        return ((terms.cat_nll if self.lambda_cat == 0 else zero)
                + (terms.cont_nll if self.lambda_cont == 0 else zero))
