"""The pieces every objective term shares: its settings, the step it reads, the registry.

A term is one label-free addition to the paper's objective. It says which phase it joins
(``"D"``: D's step, which also trains Q through the shared body; ``"G"``: G and Q's step),
which kind of code it serves (it is dropped when that code's lambda is 0, or the latent has
no such code), from which epoch it is active, its weighted loss on a ``StepContext``, and
its named epoch statistics. Terms are configured by name under ``train.objective``.

Terms outside the core (dataset presets) register through the ``infogan.presets`` entry-point
group (pyproject.toml): the core never imports them by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..augment import Augment
from ..latent import LatentBatch, LatentSpec
from ..plugins import load_presets

Phase = Literal["D", "G"]
CodeKind = Literal["categorical", "continuous"]


class TermConfig(BaseModel):
    """Settings every term has; a term's own model adds its keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    weight: float = Field(0.0, ge=0, le=1000, description="weight of the term in its phase's loss; 0 = off")
    from_epoch: int = Field(1, ge=1, description="first epoch (1-based) in which the term is active")
    every: int = Field(1, ge=1, le=64, description="lazy: computed on every N-th step only, its weight times N")
    batch: float = Field(1.0, gt=0, le=1, description="share of the step's batch the term sees (its first images)")


def sub_batch_size(cfg: TermConfig, full: int) -> int:
    """How many of a step's ``full`` images a term with settings ``cfg`` sees."""
    return max(1, round(cfg.batch * full))


@dataclass
class StepContext:
    """What one training step has computed so far, for the terms to read."""

    spec: LatentSpec
    codes: LatentBatch
    real: torch.Tensor
    epoch: int                    # 1-based: the epoch this step belongs to
    step: int                     # 0-based: steps taken before this one (decides lazy terms)
    body: Callable                # D's shared body (compiled when train.compile)
    d_head: torch.nn.Module
    q_head: torch.nn.Module
    generate: Callable            # G (compiled when train.compile)
    augment: Augment
    info_grad_shared: bool        # train.info_grad == "shared"
    fake: torch.Tensor | None = None
    h_real: torch.Tensor | None = None  # D's body on the real batch (D's step)
    cache: dict = field(default_factory=dict)

    def head(self, n: int) -> "StepContext":
        """The same step seen through its first ``n`` images and latents (a term's sub-batch)."""
        if n >= self.real.shape[0]:
            return self
        return replace(self, codes=self.codes.head(n), real=self.real[:n],
                       fake=None if self.fake is None else self.fake[:n],
                       h_real=None if self.h_real is None else self.h_real[:n])

    def q_on_real(self, h: torch.Tensor) -> torch.Tensor:
        """Q's output for body features of real images in D's step: the gradient reaches D's
        body only when the information term is shared with it."""
        return self.q_head(h if self.info_grad_shared else h.detach())


class Term:
    """One label-free term. Subclasses set the class attributes and ``loss``."""

    name: ClassVar[str]
    phase: ClassVar[Phase]
    code_kind: ClassVar[CodeKind]
    Config: ClassVar[type[TermConfig]] = TermConfig

    def __init__(self, cfg: TermConfig, spec: LatentSpec):
        self.cfg, self.spec = cfg, spec
        self.reset_stats()

    @classmethod
    def check(cls, cfg: TermConfig, config) -> None:
        """Checks across sections (latent size, batch size); raise ValueError naming the key."""

    def active(self, epoch: int, step: int) -> bool:
        return epoch >= self.cfg.from_epoch and step % self.cfg.every == 0

    def loss(self, ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError

    def reset_stats(self) -> None:
        """Start the epoch's statistics."""

    def epoch_stats(self) -> dict[str, float]:
        """This epoch's named statistics (logged in epochs.json under the term's name)."""
        return {}


_TERMS: dict[str, type[Term]] = {}


def register(cls: type[Term]) -> type[Term]:
    """Class decorator: make a term configurable as ``train.objective.<cls.name>``."""
    if cls.name in _TERMS and _TERMS[cls.name] is not cls:
        raise ValueError(f"objective term {cls.name!r} is registered twice")
    _TERMS[cls.name] = cls
    return cls


def registered_terms() -> dict[str, type[Term]]:
    """Every term, in the order they join their phase: the core's, then the presets' (in the
    order they registered), whatever was imported first."""
    load_presets()
    core = {n: c for n, c in _TERMS.items() if c.__module__.startswith(__package__)}
    return core | {n: c for n, c in _TERMS.items() if n not in core}


def term_class(name: str) -> type[Term]:
    terms = registered_terms()
    if name not in terms:
        raise ValueError(f"unknown objective term {name!r}; allowed: {', '.join(terms)}")
    return terms[name]
