"""The latent code: noise z plus categorical and continuous codes c.

One place samples, assembles, splits and describes them, so G's input layout,
Q's output layout and H(c) can never disagree.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

CONT_LOW, CONT_HIGH = -1.0, 1.0


@dataclass(frozen=True)
class LatentSpec:
    noise_dim: int = 62
    categorical: tuple[int, ...] = (10,)
    continuous: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "categorical", tuple(int(k) for k in self.categorical))
        if self.noise_dim < 0 or self.continuous < 0:
            raise ValueError("noise_dim and continuous must be >= 0")
        if any(k < 2 for k in self.categorical):
            raise ValueError(f"every categorical code needs >= 2 values, got {list(self.categorical)}")

    @classmethod
    def from_config(cls, cfg) -> "LatentSpec":
        return cls(noise_dim=cfg.noise_dim, categorical=tuple(cfg.categorical), continuous=cfg.continuous)

    @classmethod
    def from_dict(cls, d: dict) -> "LatentSpec":
        return cls(noise_dim=d["noise_dim"], categorical=tuple(d["categorical"]), continuous=d["continuous"])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["categorical"] = list(self.categorical)
        return d

    # ---- layout -------------------------------------------------------------
    @property
    def cat_dim(self) -> int:
        return sum(self.categorical)

    @property
    def input_dim(self) -> int:
        """Width of G's input: z, then one-hot categorical codes, then continuous codes."""
        return self.noise_dim + self.cat_dim + self.continuous

    @property
    def q_output_dim(self) -> int:
        """Q's raw output: categorical logits, then continuous means, then log-stds."""
        return self.cat_dim + 2 * self.continuous

    # ---- information ------------------------------------------------------------
    @property
    def entropy_categorical(self) -> float:
        """H(c_cat) in nats: sum of ln k over uniform k-way codes."""
        return float(sum(math.log(k) for k in self.categorical))

    @property
    def entropy_continuous(self) -> float:
        """Differential entropy of Uniform(-1, 1) codes: ln 2 each."""
        return self.continuous * math.log(CONT_HIGH - CONT_LOW)

    def describe(self) -> list[dict]:
        codes = [{"name": f"cat{i}", "kind": "categorical", "size": k, "values": list(range(k)),
                  "prior": "uniform", "entropy_nats": math.log(k)} for i, k in enumerate(self.categorical)]
        codes += [{"name": f"cont{j}", "kind": "continuous", "size": 1, "range": [CONT_LOW, CONT_HIGH],
                   "prior": "uniform", "entropy_nats": math.log(CONT_HIGH - CONT_LOW)}
                  for j in range(self.continuous)]
        return codes

    # ---- sampling -------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> "LatentBatch":
        """Draw n latents from the prior.  Sampled on CPU with ``generator`` so that a
        seed gives the same latents on every device, then moved."""
        z = torch.randn(n, self.noise_dim, generator=generator)
        cat = (torch.stack([torch.randint(k, (n,), generator=generator) for k in self.categorical], 1)
               if self.categorical else torch.zeros(n, 0, dtype=torch.long))
        cont = torch.rand(n, self.continuous, generator=generator) * (CONT_HIGH - CONT_LOW) + CONT_LOW
        return LatentBatch(z, cat, cont).to(device)

    def sample_on_device(self, n: int, device: torch.device) -> "LatentBatch":
        """Fast path for the training loop: sampled with the device's own RNG, no host copy."""
        z = torch.randn(n, self.noise_dim, device=device)
        cat = (torch.stack([torch.randint(k, (n,), device=device) for k in self.categorical], 1)
               if self.categorical else torch.zeros(n, 0, dtype=torch.long, device=device))
        cont = torch.rand(n, self.continuous, device=device) * (CONT_HIGH - CONT_LOW) + CONT_LOW
        return LatentBatch(z, cat, cont)

    def assemble(self, batch: "LatentBatch") -> torch.Tensor:
        parts = [batch.z]
        parts += [F.one_hot(batch.cat[:, i], k).to(batch.z.dtype) for i, k in enumerate(self.categorical)]
        parts.append(batch.cont.to(batch.z.dtype))
        return torch.cat(parts, 1)

    def split_q(self, q_out: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Q's output -> (list of logits per categorical code, means, log-stds)."""
        logits, start = [], 0
        for k in self.categorical:
            logits.append(q_out[:, start:start + k])
            start += k
        mean = q_out[:, start:start + self.continuous]
        log_std = q_out[:, start + self.continuous:start + 2 * self.continuous]
        return logits, mean, log_std


@dataclass
class LatentBatch:
    z: torch.Tensor
    cat: torch.Tensor  # (n, n_categorical) long
    cont: torch.Tensor  # (n, n_continuous) float

    def to(self, device) -> "LatentBatch":
        return LatentBatch(self.z.to(device), self.cat.to(device), self.cont.to(device))

    def __len__(self) -> int:
        return self.z.shape[0]

    def head(self, n: int) -> "LatentBatch":
        """The first ``n`` latents."""
        return LatentBatch(self.z[:n], self.cat[:n], self.cont[:n])


def traversal_latents(spec: LatentSpec, code: str, rows: int, values: list, seed: int) -> LatentBatch:
    """Latents for one code's traversal, row-major: row r, column = value index. Other
    categorical codes are drawn per row; for a continuous code, cat0 = row index mod its size
    (one category per row, as in the paper's Figure 2) and other continuous codes are 0."""
    names = [c["name"] for c in spec.describe()]
    if code not in names:
        raise ValueError(f"unknown code {code!r}; this latent spec has {names}")
    gen = torch.Generator().manual_seed(seed)
    base = spec.sample(rows, gen)
    cols = len(values)
    z = base.z.repeat_interleave(cols, 0)
    cat = base.cat.repeat_interleave(cols, 0)
    cont = torch.zeros(rows * cols, spec.continuous)
    index = int(code[3:] if code.startswith("cat") else code[4:])
    if code.startswith("cat"):
        cat[:, index] = torch.tensor(values, dtype=torch.long).repeat(rows)
    else:
        if spec.categorical:
            cat[:, 0] = (torch.arange(rows) % spec.categorical[0]).repeat_interleave(cols)
        cont[:, index] = torch.tensor(values, dtype=torch.float32).repeat(rows)
    return LatentBatch(z, cat, cont)
