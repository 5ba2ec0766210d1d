"""The InfoGAN objective, ``min_{G,Q} max_D V(D, G) - lambda L_I(G, Q)``, as two phases.

``Objective.discriminator_phase`` is D's step: the adversarial loss on real and generated
images, the information term when it shares D's body (``train.info_grad: shared``), then the
D-phase terms. ``Objective.generator_phase`` is G and Q's step: the non-saturating loss, the
information term, then the G-phase terms. Each term is one module (``real_info``,
``warped_info``; dataset presets add theirs); a term that is off is not built, so it costs
nothing. A lazy term (``every: N``) joins every N-th step only, weighted N times, as StyleGAN2
evaluates its regularisers (Karras et al. 2020, appendix B); a term with ``batch: f`` sees the
first share f of the step's images and latents (a sub-batch; its loss is a mean, so the same
scale). Both phases return the loss and named statistics; a lazy term's statistic is reported
on the steps that compute it.
"""
from __future__ import annotations

import torch

from . import real_info, warped_info  # noqa: F401 - the core's terms register on import
from .base import StepContext, Term, TermConfig, register, registered_terms, sub_batch_size, term_class
from .gan import d_loss, g_loss
from .information import Information, InfoTerms, info_nll, mutual_info_lower_bound

__all__ = ["Objective", "StepContext", "Term", "TermConfig", "register", "registered_terms", "sub_batch_size",
           "term_class", "d_loss", "g_loss", "Information", "InfoTerms", "info_nll", "mutual_info_lower_bound"]


class Objective:
    def __init__(self, tc, spec):
        self.spec = spec
        self.info = Information(spec, tc.lambda_cat, tc.lambda_cont)
        self.shares_body = tc.info_grad == "shared"
        self.terms: list[Term] = [cls(tc.objective[name], spec) for name, cls in registered_terms().items()
                                  if name in tc.objective and self._wanted(cls, tc.objective[name])]

    def _wanted(self, cls: type[Term], cfg: TermConfig) -> bool:
        """Off when its weight is 0, its code's lambda is 0 (the ablation), or there is no such code."""
        has_code = bool(self.spec.categorical) if cls.code_kind == "categorical" else self.spec.continuous > 0
        return cfg.weight > 0 and self.info.lambda_of(cls.code_kind) > 0 and has_code

    def active(self, phase: str, ctx: StepContext) -> list[Term]:
        return [t for t in self.terms if t.phase == phase and t.active(ctx.epoch, ctx.step)]

    def _add_terms(self, phase: str, ctx: StepContext, loss: torch.Tensor,
                   stats: dict[str, torch.Tensor]) -> torch.Tensor:
        for term in self.active(phase, ctx):
            part = term.loss(ctx.head(sub_batch_size(term.cfg, ctx.real.shape[0])))
            loss, stats[term.name] = loss + term.cfg.every * part, part.detach().float()
        return loss

    def stat_names(self) -> list[str]:
        return ["loss_d", "loss_g", "info_cat_nll", "info_cont_nll"] + [t.name for t in self.terms]

    def discriminator_phase(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h_real, h_fake = ctx.body(ctx.real), ctx.body(ctx.fake.detach())
        adversarial = d_loss(ctx.d_head(h_real).squeeze(1), ctx.d_head(h_fake).squeeze(1))
        loss, stats = adversarial, {"loss_d": adversarial.detach().float()}
        if self.shares_body:
            loss = loss + self.info.weighted(self.info.nll(ctx.q_head(h_fake), ctx.codes))
        ctx.h_real = h_real
        loss = self._add_terms("D", ctx, loss, stats)
        if self.info.probes:
            loss = loss + self.info.probe(self.info.nll(ctx.q_head(h_fake.detach()), ctx.codes))
        return loss, stats

    def generator_phase(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = ctx.body(ctx.fake)
        adversarial = g_loss(ctx.d_head(h).squeeze(1))
        info = self.info.nll(ctx.q_head(h), ctx.codes)
        loss = adversarial + self.info.weighted(info)
        stats = {"loss_g": adversarial.detach().float(), "info_cat_nll": info.cat_nll.detach(),
                 "info_cont_nll": info.cont_nll.detach()}
        return self._add_terms("G", ctx, loss, stats), stats

    def reset_stats(self) -> None:
        for term in self.terms:
            term.reset_stats()

    def epoch_stats(self) -> dict[str, dict[str, float]]:
        return {t.name: s for t in self.terms if (s := t.epoch_stats())}
