"""Everything the generation service does besides HTTP: load G from a model folder, check
requests against the model's latent spec, build latents, run G through a small batcher,
encode PNG/GIF.

Reproducibility contract: image ``i`` of a request with ``seed`` is drawn from its own
generator seeded with ``seed + i`` (z first, then the codes that are not fixed), so the
JSON variant can report, for every image, the single-image request that redraws it.
G is always run on at least ``MIN_ROWS`` rows (padding with zeros): on CPU, PyTorch picks
a different matmul kernel for 1-3 rows, whose last-bit float differences could change a
pixel after rounding; from 4 rows up a row's output does not depend on the other rows.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image

from infogan.checkpoint import load_checkpoint, rebuild_generator
from infogan.images import make_grid
from infogan.latent import LatentBatch
from infogan.nets import Generator
from infogan.package import CODE_NAMES_FILE, GENERATOR_FILE
MAX_IMAGES = 256  # per request, and per G forward
MIN_ROWS = 8  # see the module docstring
CONT_FIXED_RANGE = (-3.0, 3.0)  # fixed continuous values may extrapolate past the prior's [-1, 1]


def read_json(path: Path) -> dict:
    return finite_json(json.loads(path.read_text())) if path.is_file() else {}


class RequestError(ValueError):
    """A request that does not fit this model; the service turns it into HTTP 400."""


def load_generator(model_dir: str | Path) -> tuple[Generator, dict]:
    path = Path(model_dir) / GENERATOR_FILE
    blob = load_checkpoint(path)
    try:
        return rebuild_generator(blob), blob
    except ValueError as exc:
        raise ValueError(f"{path} {exc}") from None


def finite_json(obj):
    """NaN/inf (JSON cannot carry them) -> None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def gif_bytes(frames: list[Image.Image], frame_ms: int) -> bytes:
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return buf.getvalue()


class MicroBatcher:
    """Run G on the rows of every request waiting when G becomes free, in one forward.

    No batching window: a lone request runs at once; requests that arrive while G is busy
    are merged (up to ``max_rows``) into the next forward. Forwards run one at a time in a
    worker thread, so the event loop keeps accepting requests.
    """

    def __init__(self, g: Generator, max_rows: int = MAX_IMAGES, min_rows: int = MIN_ROWS):
        self.g, self.max_rows, self.min_rows = g, max_rows, min_rows
        self._pending: deque = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="infogan-g")
        self._lock = threading.Lock()
        self.stats = {"forwards": 0, "requests": 0, "rows": 0, "max_requests_per_forward": 0, "forward_s": 0.0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """G on ``x`` padded to at least ``min_rows`` rows; thread-safe; inference mode."""
        n = x.shape[0]
        if n < self.min_rows:
            x = torch.cat([x, x.new_zeros(self.min_rows - n, x.shape[1])])
        with self._lock, torch.inference_mode():
            start = time.perf_counter()
            out = self.g(x)[:n].clone()
            self.stats["forward_s"] += time.perf_counter() - start
            return out

    async def __call__(self, x: torch.Tensor) -> torch.Tensor:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run())
        fut = loop.create_future()
        self._pending.append((x, fut))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, rows = [], 0
                while self._pending and (not batch or rows + len(self._pending[0][0]) <= self.max_rows):
                    item = self._pending.popleft()
                    if item[1].done():  # the client went away
                        continue
                    batch.append(item)
                    rows += len(item[0])
                if not batch:
                    continue
                try:
                    out = await loop.run_in_executor(self._executor, self.forward, torch.cat([b[0] for b in batch]))
                except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                self.stats["forwards"] += 1
                self.stats["requests"] += len(batch)
                self.stats["rows"] += rows
                self.stats["max_requests_per_forward"] = max(self.stats["max_requests_per_forward"], len(batch))
                start = 0
                for x, fut in batch:
                    if not fut.done():
                        fut.set_result(out[start:start + len(x)])
                    start += len(x)


class CodeNames:
    """What a request may name: this model's codes, the labels of its categorical values and
    the roles of its continuous codes (from ``codes.json``); the checks of those names, and the
    JSON schemas that state them exactly (for the OpenAPI document)."""

    def __init__(self, spec, names: dict):
        self.spec, self.names = spec, names
        self.codes = {c["name"]: c for c in spec.describe()}
        self.labels = self._labels()
        self.roles = self._roles()

    def _roles(self) -> dict[str, str]:
        """role -> continuous code, for the roles exactly one code plays (a role two codes share,
        such as two codes that both mostly change brightness, names neither)."""
        found = [(entry.get("role"), code) for code, entry in (self.names.get("continuous") or {}).items()
                 if code in self.codes]
        roles = [role for role, _ in found]
        return {role: code for role, code in found if role and roles.count(role) == 1 and role not in self.codes}

    def _labels(self) -> dict[str, dict]:
        """label -> the categorical value that draws it (of several, the purest on real images)."""
        out: dict[str, dict] = {}
        for code, values in (self.names.get("categorical") or {}).items():
            if code not in self.codes:
                continue
            for entry in values:
                if entry["label"] not in out or entry["purity"] > out[entry["label"]]["purity"]:
                    out[entry["label"]] = {"code": code, **entry}
        return dict(sorted(out.items(), key=lambda item: item[1].get("label_index", 0)))

    # ---- request checks ---------------------------------------------------------
    def check_code_name(self, field: str, name: str) -> dict:
        """A code by its name (``cat0``, ``cont1``) or, for a continuous code, by its role."""
        name = self.roles.get(name, name)
        if name not in self.codes:
            roles = f"; or a role: {', '.join(self.roles)}" if self.roles else ""
            raise RequestError(f"{field}: unknown code {name!r}; this model's codes are {', '.join(self.codes)}{roles}")
        return self.codes[name]

    def check_label(self, label: str) -> tuple[str, int]:
        if not self.labels:
            raise RequestError("label: this model has no labels (it was scored without labelled data); "
                               "fix a categorical code by value instead, e.g. codes: {\"cat0\": 3}")
        if label not in self.labels:
            raise RequestError(f"label: unknown label {label!r}; this model's labels are {', '.join(self.labels)}")
        return self.labels[label]["code"], int(self.labels[label]["value"])

    def check_fixed(self, fixed: dict | None, label: str | None = None) -> dict[str, float]:
        out = {}
        for given, value in (fixed or {}).items():
            code = self.check_code_name(f"codes.{given}", given)
            name = code["name"]
            if name in out:
                raise RequestError(f"codes.{given}: {name} is given twice")
            value = float(value)
            if not math.isfinite(value):
                raise RequestError(f"codes.{given}: value must be a finite number, got {value}")
            if code["kind"] == "categorical":
                if not value.is_integer() or not 0 <= value < code["size"]:
                    raise RequestError(f"codes.{given}: categorical index must be an integer in "
                                       f"0..{code['size'] - 1}, got {value:g}")
                out[name] = int(value)
            else:
                low, high = CONT_FIXED_RANGE
                if not low <= value <= high:
                    raise RequestError(f"codes.{given}: continuous value must be in [{low:g}, {high:g}], got {value:g}")
                out[name] = value
        if label is not None:
            name, value = self.check_label(label)
            if out.get(name, value) != value:
                raise RequestError(f"label: {label!r} is {name}={value}, but codes sets {name}={out[name]}")
            out[name] = value
        return out

    def describe_names(self) -> dict:
        """For /info: the labels with their purities, the roles with their correlations."""
        labels = [{"label": label, "code": e["code"], "value": e["value"], "purity": e["purity"],
                   "generated_purity": e.get("generated_purity"), "images": e.get("images")}
                  for label, e in self.labels.items()]
        roles = {role: {"code": code, **{k: v for k, v in self.names["continuous"][code].items() if k != "role"}}
                 for role, code in self.roles.items()}
        return {"labels": labels, "roles": roles, "generated_purity": self.names.get("generated_purity")}

    # ---- the same rules as JSON schemas -----------------------------------------------
    def codes_schema(self) -> dict:
        """``codes``: each code (or role) with its range; a code and its role not both."""
        low, high = CONT_FIXED_RANGE
        properties = {}
        for name, code in self.codes.items():
            properties[name] = ({"type": "integer", "minimum": 0, "maximum": code["size"] - 1}
                                if code["kind"] == "categorical" else {"type": "number", "minimum": low, "maximum": high})
        for role, code in self.roles.items():
            properties[role] = dict(properties[code])
        schema = {"type": "object", "properties": properties, "additionalProperties": False}
        twice = [{"not": {"required": [code, role]}} for role, code in self.roles.items()]
        return schema | ({"allOf": twice} if twice else {})

    def label_schema(self) -> dict:
        return {"enum": list(self.labels)} if self.labels else {"not": {"type": "string"}}

    def code_name_schema(self) -> dict:
        return {"enum": list(self.codes) + list(self.roles)}

    def label_conflicts(self) -> list[dict]:
        """Body schemas a request must not match: a label together with another value of its code."""
        other_value = lambda e: {"type": "object", "required": [e["code"]],  # noqa: E731
                                 "properties": {e["code"]: {"not": {"enum": [e["value"]]}}}}
        return [{"required": ["label", "codes"], "properties": {"label": {"enum": [label]}, "codes": other_value(e)}}
                for label, e in self.labels.items()]

    def traversal_conflicts(self, default_code: str) -> list[dict]:
        """Body schemas /traverse must not match: a label that fixes the code being traversed."""
        out = []
        for code in sorted({e["code"] for e in self.labels.values()}):
            labels = [label for label, e in self.labels.items() if e["code"] == code]
            out.append({"required": ["label"] if code == default_code else ["label", "code"],
                        "properties": {"label": {"enum": labels}, "code": {"enum": [code]}}})
        return out


class Engine(CodeNames):
    def __init__(self, model_dir: str | Path):
        self.model_dir = Path(model_dir)
        self.g, self.blob = load_generator(self.model_dir)
        super().__init__(self.g.spec, self.read_json(CODE_NAMES_FILE))
        self.batcher = MicroBatcher(self.g)
        self.batcher.forward(self.spec.assemble(self.spec.sample(1, torch.Generator().manual_seed(0))))  # warm up

    def read_json(self, name: str) -> dict:
        return read_json(self.model_dir / name)

    # ---- latents ---------------------------------------------------------------------
    def latents(self, n: int, seed: int, fixed: dict[str, float]) -> LatentBatch:
        """Image i: its own generator seeded with seed + i; fixed codes override the draw."""
        parts = [self.spec.sample(1, torch.Generator().manual_seed(seed + i)) for i in range(n)]
        batch = LatentBatch(torch.cat([p.z for p in parts]), torch.cat([p.cat for p in parts]),
                            torch.cat([p.cont for p in parts]))
        return self.fix(batch, fixed)

    @staticmethod
    def fix(batch: LatentBatch, fixed: dict[str, float]) -> LatentBatch:
        """``batch`` with every row's fixed codes (by name, as ``check_fixed`` returns them) set."""
        for name, value in fixed.items():
            if name.startswith("cat"):
                batch.cat[:, int(name[3:])] = int(value)
            else:
                batch.cont[:, int(name[4:])] = float(value)
        return batch

    def code_values(self, batch: LatentBatch) -> list[dict]:
        rows = []
        for i in range(len(batch)):
            row = {f"cat{j}": int(batch.cat[i, j]) for j in range(batch.cat.shape[1])}
            row.update({f"cont{j}": float(batch.cont[i, j]) for j in range(batch.cont.shape[1])})
            rows.append(row)
        return rows

    async def images(self, batch: LatentBatch) -> torch.Tensor:
        return await self.batcher(self.spec.assemble(batch))
