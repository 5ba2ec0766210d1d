"""InfoGAN generator as an HTTP service: ``bentoml serve service.service:InfoGANGenerator``.

Endpoints (all POST, JSON body): ``/generate`` (PNG grid), ``/generate_json`` (code values
and a base64 PNG per image), ``/traverse`` (PNG grid or animated GIF of one code's sweep),
``/info`` (latent spec, model tag, metrics, provenance). BentoML's ``/livez``, ``/readyz``
and ``/metrics`` stay on. ``INFOGAN_MODEL_TAG`` picks the model (default
``infogan-generator:latest``) from the store at ``BENTOML_HOME``.
"""
from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional, get_args

import bentoml
import torch
from PIL import Image
from pydantic import Field
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

try:
    import infogan  # noqa: F401
except ImportError:  # a bento or image built from source ships src/infogan beside service/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from infogan.images import make_grid  # noqa: E402
from infogan.latent import traversal_latents  # noqa: E402
from infogan.package import CODE_NAMES_FILE  # noqa: E402

from .engine import (CONT_FIXED_RANGE, MAX_IMAGES, CodeNames, Engine, RequestError, finite_json,  # noqa: E402
                     gif_bytes, load_generator, png_bytes, read_json)
from .guard import RequestGuard  # noqa: E402

def _model_tag() -> str:
    """INFOGAN_MODEL_TAG if set; else the tag the `promote` flow last promoted
    (INFOGAN_PROMOTED_FILE, default models/promoted.json); else the newest packaged model."""
    if os.environ.get("INFOGAN_MODEL_TAG"):
        return os.environ["INFOGAN_MODEL_TAG"]
    pointer = Path(os.environ.get("INFOGAN_PROMOTED_FILE", "models/promoted.json"))
    if pointer.is_file():
        try:
            return json.loads(pointer.read_text())["tag"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"infogan service: {pointer} is unreadable ({exc}); fix or delete it") from None
    return "infogan-generator:latest"


MODEL_TAG = _model_tag()
SEED_MAX = 2**32 - 1


def _stored_model(tag: str):
    """The model from the local store, checked loadable, with what requests may name in it;
    or exit with what to do.

    Checked here, at import, because BentoML restarts a worker whose ``__init__`` raises
    forever, and a BentoModel missing locally is looked up on BentoCloud.
    """
    home = os.environ.get("BENTOML_HOME", "~/bentoml (BENTOML_HOME is unset)")
    try:
        model = bentoml.models.get(tag)
        g, _ = load_generator(model.path)
        names = CodeNames(g.spec, read_json(Path(model.path) / CODE_NAMES_FILE))
    except bentoml.exceptions.NotFound:
        raise SystemExit(f"infogan service: model {tag!r} is not in the BentoML store at {home}. Run `dvc repro` "
                         f"(or `python -m infogan package`) with the same BENTOML_HOME, import an exported one with "
                         f"`bentoml models import models/infogan-generator.bentomodel`, or set INFOGAN_MODEL_TAG "
                         f"to a tag listed by `bentoml models list`.") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable model is fatal at start-up
        raise SystemExit(f"infogan service: model {tag!r} in {home} cannot be loaded ({exc}); re-run "
                         f"`python -m infogan package` (or `dvc repro`).") from None
    return model, names


STORED, NAMES = _stored_model(MODEL_TAG)

N = Annotated[int, Field(strict=True, ge=1, le=MAX_IMAGES, description=f"number of images, 1..{MAX_IMAGES}")]
Seed = Annotated[int, Field(strict=True, ge=0, le=SEED_MAX, description="image i is drawn with seed + i")]
Codes = Annotated[Optional[dict[str, Annotated[float, Field(strict=True)]]], Field(max_length=16, 
    description="fixed code values, e.g. {\"cat0\": 3, \"cont1\": 0.5} (a continuous code may be named by its "
                "role, e.g. {\"slant\": 0.5}): categorical index in range, "
                f"continuous in [{CONT_FIXED_RANGE[0]:g}, {CONT_FIXED_RANGE[1]:g}]; others are drawn")]
Label = Annotated[Optional[str], Field(
    strict=True, max_length=64, description="a label, e.g. \"7\" or \"Sneaker\": fixes the categorical value that draws it "
                               "(/info lists the labels and their purities)")]
ContValue = Annotated[float, Field(strict=True, ge=CONT_FIXED_RANGE[0], le=CONT_FIXED_RANGE[1])]


def _bad(exc: RequestError) -> bentoml.exceptions.InvalidArgument:
    return bentoml.exceptions.InvalidArgument(str(exc))


def _image_response(data: bytes, media_type: str) -> Response:
    return Response(content=data, media_type=media_type)


# The latent explorer (static HTML/JS/CSS, no build step) at /explorer/; it calls the APIs below.
EXPLORER = StaticFiles(directory=Path(__file__).resolve().parent / "explorer", html=True, check_dir=False)
WORKERS = int(os.environ.get("INFOGAN_WORKERS", "1"))  # worker processes; more keep serving while one restarts


@bentoml.asgi_app(EXPLORER, path="/explorer", name="explorer")
@bentoml.service(workers=WORKERS, traffic={"timeout": 60})
class InfoGANGenerator:
    model_ref = bentoml.models.BentoModel(str(STORED.tag))

    def __init__(self) -> None:
        threads = os.environ.get("INFOGAN_TORCH_THREADS")
        if threads:
            torch.set_num_threads(int(threads))
        self.engine = Engine(self.model_ref.path)
        self.metrics = self.engine.read_json("metrics.json")

    async def _generate(self, n: int, seed: int, codes: dict | None, label: str | None):
        try:
            fixed = self.engine.check_fixed(codes, label)
        except RequestError as exc:
            raise _bad(exc) from None
        batch = self.engine.latents(n, seed, fixed)
        return fixed, batch, await self.engine.images(batch)

    @bentoml.api
    async def generate(self, n: N = 16, seed: Seed = 0, codes: Codes = None, label: Label = None,
                       ncol: Annotated[Optional[int], Field(strict=True, ge=1, le=MAX_IMAGES)] = None) -> Image.Image:  # returns the encoded bytes as a Response
        """A PNG grid of n images (ncol columns, default about sqrt(n)); same inputs, same bytes."""
        _, _, images = await self._generate(n, seed, codes, label)
        ncol = ncol or math.ceil(math.sqrt(n))
        return _image_response(await asyncio.to_thread(lambda: png_bytes(make_grid(images, ncol))), "image/png")

    @bentoml.api
    async def generate_json(self, n: N = 16, seed: Seed = 0, codes: Codes = None, label: Label = None) -> dict:
        """Each image with the code values it used and the single-image request that redraws it."""
        fixed, batch, images = await self._generate(n, seed, codes, label)
        values = self.engine.code_values(batch)

        def encode() -> list[str]:
            return [base64.b64encode(png_bytes(make_grid(images[i:i + 1], 1, pad=0))).decode() for i in range(n)]

        pngs = await asyncio.to_thread(encode)
        return {"model": str(STORED.tag), "seed": seed, "n": n, "label": label, "fixed": fixed,
                "images": [{"index": i, "codes": values[i], "png_base64": pngs[i],
                            "reproduce": {"n": 1, "seed": seed + i, "codes": values[i]}} for i in range(n)]}

    @bentoml.api
    async def traverse(self, code: str = "cat0", low: ContValue = -2.0, high: ContValue = 2.0,
                       steps: Annotated[int, Field(strict=True, ge=2, le=32)] = 9, rows: Annotated[int, Field(strict=True, ge=1, le=8)] = 8,
                       seed: Seed = 0, label: Label = None, format: Literal["png", "gif"] = "png",
                       frame_ms: Annotated[int, Field(strict=True, ge=20, le=5000)] = 250) -> Image.Image:  # returns the encoded bytes as a Response
        """Sweep one code: rows = noise vectors, columns = code values (categorical: every value,
        low/high/steps ignored; continuous: steps values from low to high, cat0 = row mod size).
        ``code`` may be a continuous code's role; ``label`` fixes its categorical value in every row.
        ``format=gif``: one frame per column value."""
        try:
            spec = self.engine.check_code_name("code", code)
            fixed = self.engine.check_fixed(None, label)
            if spec["name"] in fixed:
                raise RequestError(f"label: {label!r} fixes {spec['name']}, the code being traversed")
        except RequestError as exc:
            raise _bad(exc) from None
        code = spec["name"]
        if spec["kind"] == "categorical":
            values = list(range(spec["size"]))
        else:
            values = [low + (high - low) * i / (steps - 1) for i in range(steps)]
        if rows * len(values) > MAX_IMAGES:
            raise bentoml.exceptions.InvalidArgument(
                f"rows: rows x columns = {rows} x {len(values)} exceeds {MAX_IMAGES} images; lower rows or steps")
        latents = self.engine.fix(traversal_latents(self.engine.spec, code, rows, values, seed), fixed)
        images = await self.engine.images(latents)
        if format == "png":
            data = await asyncio.to_thread(lambda: png_bytes(make_grid(images, len(values))))
            return _image_response(data, "image/png")
        cols = len(values)
        frames = lambda: [make_grid(images[j::cols], min(rows, 8)) for j in range(cols)]  # noqa: E731
        data = await asyncio.to_thread(lambda: gif_bytes(frames(), frame_ms))
        return _image_response(data, "image/gif")

    @bentoml.api
    def info(self) -> dict:
        """Latent spec, what each code stands for (labels with purities, roles with correlations),
        image shape, model tag, evaluation metrics and provenance."""
        spec, g, blob, engine = self.engine.spec, self.engine.g, self.engine.blob, self.engine
        # The package stage's `<code>_controls` metadata: what evaluation found each continuous code controls.
        roles = {k[:-len("_controls")]: v for k, v in STORED.info.metadata.items() if k.endswith("_controls")}
        names = engine.describe_names()
        codes = []
        for c in spec.describe():
            c = dict(c)
            if c["kind"] == "continuous":
                c["fixed_range"] = list(CONT_FIXED_RANGE)
                c["controls"] = roles.get(c["name"])
                role = (engine.names.get("continuous") or {}).get(c["name"]) or {}
                c["role"], c["r"] = role.get("role"), role.get("r")
            else:
                c["values"] = (engine.names.get("categorical") or {}).get(c["name"], [])
            codes.append(c)
        info = STORED.info
        return {
            "model": {"tag": str(STORED.tag), "name": STORED.tag.name, "version": STORED.tag.version,
                      "created": info.creation_time.isoformat()},
            "image": {"channels": g.channels, "height": g.image_size, "width": g.image_size},
            "latent": {"noise_dim": spec.noise_dim, "codes": codes},
            "continuous_controls": roles,
            **names,
            "limits": {"max_images": MAX_IMAGES, "seed_max": SEED_MAX},
            "metrics": self.metrics,
            "provenance": {"git_revision": info.metadata.get("git_revision", "unknown"), "labels": dict(info.labels),
                           "metadata": finite_json(dict(info.metadata)),
                           "experiment": blob.get("experiment"), "epoch": blob.get("epoch"),
                           "images_seen": blob.get("images_seen"), "checkpoint_format": blob.get("format")},
            "batching": dict(self.engine.batcher.stats),
            "torch_threads": torch.get_num_threads(),
        }


# JSON only, bounded bodies, no unknown fields (service/guard.py); the fields are the APIs' own.
API_FIELDS = {api.route: set(api.input_spec.model_fields) for api in InfoGANGenerator.apis.values()}
NULLABLE_FIELDS = {api.route: {name for name, field in api.input_spec.model_fields.items()
                               if type(None) in get_args(field.annotation)}
                   for api in InfoGANGenerator.apis.values()}
# The model's own rules, for the OpenAPI document: what a label, a code name and `codes` may be.
MODEL_SCHEMAS = {
    "/generate": {"properties": {"label": NAMES.label_schema(), "codes": NAMES.codes_schema()},
                  "forbidden": NAMES.label_conflicts()},
    "/traverse": {"properties": {"label": NAMES.label_schema(), "code": NAMES.code_name_schema()},
                  "forbidden": NAMES.traversal_conflicts(default_code="cat0")},
}
MODEL_SCHEMAS["/generate_json"] = MODEL_SCHEMAS["/generate"]
InfoGANGenerator.add_asgi_middleware(RequestGuard, fields=API_FIELDS, nullable=NULLABLE_FIELDS, schemas=MODEL_SCHEMAS)
