"""Typed run configuration (model, data, train, augment): defaults, validation, TOML in/out."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the fix."""


@dataclass
class ConvBlock:
    """One convolution block: conv -> (batch norm) -> ReLU -> (max pool)."""

    filters: int = 32
    kernel: int = 3
    stride: int = 1
    # "same", "valid" or a non-negative integer number of zero pixels on each side.
    padding: str | int = "same"
    # Max-pool window; 0 or 1 means no pooling. pool_stride 0 means "same as pool".
    pool: int = 2
    pool_stride: int = 0
    batch_norm: bool = False
    # Two convs with an identity (or 1x1 projection) shortcut: conv-BN-ReLU-conv-BN + x, ReLU.
    residual: bool = False


@dataclass
class ModelConfig:
    """The CNN: conv blocks, then flatten (or global average pool), dense layers, logits."""

    conv: list[ConvBlock] = field(
        default_factory=lambda: [ConvBlock(32), ConvBlock(64), ConvBlock(128)]
    )
    global_pool: bool = False
    dense: list[int] = field(default_factory=lambda: [128])
    dropout: float = 0.3
    # A pretrained-style backbone ("resnet18", "resnet50", ...; cnncli/backbones) instead of
    # the conv blocks and dense layers above: its stages, global average pool, dropout, logits.
    backbone: str = ""
    # Per-channel input normalisation (x / 255 - mean) / std, set from a pretrained
    # backbone's config (ImageNet's); empty = x / 127.5 - 1, the scratch default.
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)


@dataclass
class DataConfig:
    """How images become arrays and how the split is made."""

    # Input size: an int N for N x N, or [height, width].
    image_size: int | list[int] = 64
    channels: int = 3
    # How an image of another shape becomes the input: crop (centre), pad (whole image,
    # letterboxed in pad_color) or squish (stretched).
    resize: str = "crop"
    pad_color: list[int] = field(default_factory=lambda: list(PAD_COLOR))
    val_fraction: float = 0.2
    # Keep duplicates on one side of the split: near (identical files and pixels, and
    # near-duplicate groups as `cnn doctor` finds them), exact (identical only) or off.
    split_guard: str = "near"
    # Decoded-image cache budget in MiB; above it the cache is a memory-mapped file.
    cache_memory: int = 2048
    follow_symlinks: bool = False
    # Resize: shorter side to image_size / crop_pct, then the centre image_size square (timm's
    # eval transform; 1.0 = the whole centre square); set from a pretrained backbone's config.
    crop_pct: float = 1.0
    interpolation: str = "bilinear"  # bilinear | bicubic | nearest

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the network's input."""
        return size_hw(self.image_size)


@dataclass
class AugmentConfig:
    """Online augmentation: a preset and/or explicit ops (name -> magnitude)."""

    preset: str = "none"
    ops: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation settings."""

    epochs: int = 15
    batch_size: int = 64
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-4  # used by adamw (decoupled) and sgd (L2)
    momentum: float = 0.9  # sgd only
    warmup_epochs: float = 1.0
    schedule: str = "cosine"  # cosine | constant
    label_smoothing: float = 0.0
    seed: int = 0
    # Stop when val accuracy has not improved for this many epochs (0 = never).
    patience: int = 0
    # Stop at the first epoch boundary past this many minutes of training (0 = no cap).
    time_limit: float = 0.0
    # "none" or "auto" (inverse class frequency in the loss).
    class_weights: str = "none"
    # "shuffle" (each image once per epoch) or "balanced" (classes drawn equally often).
    sampler: str = "shuffle"
    # Data-parallel over this many devices (0 = all visible); batch_size must divide evenly.
    devices: int = 1
    # The data order in this many shards (0 = one per process). A process decodes only the
    # shards it feeds; a one-process run with shards = N repeats an N-process run exactly.
    shards: int = 0
    # Where the decoded train split lives while training (cnncli/data/feed.py): "auto",
    # "device" (all of it on the device, each batch gathered inside the compiled step),
    # "chunked" (streamed in chunk_mb chunks, two in flight) or "host" (numpy gathers each
    # batch and copies it). auto: device when it fits device_memory_share of the
    # accelerator's memory (on a CPU: when it is held in RAM, not memory-mapped), else chunked.
    data_placement: str = "auto"
    device_memory_share: float = 0.5
    chunk_mb: float = 256.0
    # Train steps per call to the device (lax.scan); 0 = auto: 1 on a CPU (XLA:CPU runs
    # convolutions inside loops slowly), about 100k images a call on an accelerator.
    steps_per_dispatch: int = 0
    # fp32, or bf16: activations and convolutions in bfloat16; weights, optimizer state,
    # batch-norm statistics and the loss stay float32.
    precision: str = "fp32"
    # Start from weights (cnncli/training/warm_start.py): a backbone name (resnet18), a timm-layout
    # safetensors file or folder, or a cnn run / model folder. "" = from scratch.
    init: str = ""
    # Backbone frozen: its pooled features are computed once per image, only the head trains.
    freeze: bool = False
    # Fine-tune phase 1: this many epochs of the head alone (on the cached features) before
    # `epochs` epochs of everything.
    head_epochs: int = 0
    # Learning rate of everything but the head in phase 2 (0 = the same as lr).
    backbone_lr: float = 0.0
    # Batch norm keeps (and uses) its running statistics while fine-tuning (small batches).
    freeze_bn: bool = False
    # EfficientNet-Lite: fine-tune only the last N blocks (+ head conv and classifier) on
    # cached activations of the blocks below, batch norm frozen; 0 = every block.
    tune_blocks: int = 0


@dataclass
class LogConfig:
    """Extra logs a run writes besides metrics.csv."""

    # TensorBoard event files under RUN/tb/ (needs tensorboardX: pip install 'cnn[tensorboard]').
    tensorboard: bool = False


@dataclass
class RunConfig:
    """Everything a run needs; saved as config.toml in the run folder and replayable."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    log: LogConfig = field(default_factory=LogConfig)


RESIZE_POLICIES = ("crop", "pad", "squish")
# Mid grey: normalised to about 0, so letterbox padding carries no signal into the first conv.
PAD_COLOR = (128, 128, 128)
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "constant")
CLASS_WEIGHTS = ("none", "auto")
SAMPLERS = ("shuffle", "balanced")
DATA_PLACEMENTS = ("auto", "device", "chunked", "host")
PRECISIONS = ("fp32", "bf16")
SPLIT_GUARDS = ("near", "exact", "off")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def model_preset(name: str) -> ModelConfig:
    """Named architectures: tiny, small (the default), small-bn, compact, medium, resnet."""
    presets = {
        "tiny": lambda: ModelConfig(conv=[ConvBlock(16), ConvBlock(32)], dense=[64], dropout=0.2),
        "small": ModelConfig,
        # The small CNN with batch norm after every conv (the recipe's choice for photos).
        "small-bn": lambda: ModelConfig(
            conv=[ConvBlock(f, batch_norm=True) for f in (32, 64, 128)]
        ),
        # Two BN conv blocks and a wide dense layer: the Fashion-MNIST recipe's network,
        # for inputs of 32 px or less (a third pool would leave 3x3 maps).
        "compact": lambda: ModelConfig(
            conv=[ConvBlock(f, batch_norm=True) for f in (32, 64)], dense=[256]
        ),
        "medium": lambda: ModelConfig(
            conv=[ConvBlock(f, batch_norm=True) for f in (32, 64, 128, 256)],
            dense=[256],
            dropout=0.4,
        ),
        "resnet": lambda: ModelConfig(
            conv=[ConvBlock(32, batch_norm=True)]
            + [ConvBlock(f, batch_norm=True, residual=True) for f in (64, 128, 256)],
            global_pool=True,
            dense=[],
            dropout=0.0,
        ),
    }
    if name not in presets:
        raise ConfigError(f"unknown model preset {name!r} (choose from {', '.join(presets)})")
    return presets[name]()


LARGE_BATCH = 1024  # --large-batch's default: enough images per step to keep a GPU busy
LARGE_BATCH_WARMUP_EPOCHS = 2.0


def large_batch(t: TrainConfig, batch_size: int = LARGE_BATCH) -> TrainConfig:
    """The accelerator preset: t's recipe scaled to `batch_size` images a step.

    The learning rate grows with the batch: by the square root of the batch ratio for adam
    and adamw (the square-root rule for adaptive optimizers, Malladi et al. 2022), linearly
    for sgd (Goyal et al. 2017, "ImageNet in 1 hour"), and the linear warm-up lasts at
    least LARGE_BATCH_WARMUP_EPOCHS so the larger steps start gently. The epochs stay.
    """
    _check(batch_size >= 1, f"--large-batch must be >= 1, got {batch_size}")
    ratio = batch_size / t.batch_size
    scale = ratio if t.optimizer == "sgd" else ratio**0.5
    return dataclasses.replace(
        t,
        batch_size=batch_size,
        lr=t.lr * scale,
        warmup_epochs=max(t.warmup_epochs, LARGE_BATCH_WARMUP_EPOCHS),
    )


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def size_hw(size: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    """An image size (N, or [height, width]) as (height, width)."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def parse_image_size(text: str) -> int | list[int]:
    """--image-size: 'N' (N x N) or 'H,W'; ConfigError (one line) when malformed."""
    parts = str(text).split(",")
    try:
        values = [int(p.strip()) for p in parts] if len(parts) <= 2 else []
    except ValueError:
        values = []
    if not values or any(v < 4 or v > 1024 for v in values):
        raise ConfigError(
            f"--image-size takes N or H,W, each side 4..1024 pixels (e.g. 64 or 48,64); "
            f"got {text!r}"
        )
    return values[0] if len(values) == 1 or values[0] == values[1] else values


def parse_color(text: str) -> list[int]:
    """--pad-color: a grey level 'V', 'R,G,B' or '#rrggbb' (each 0..255) -> [r, g, b]."""
    raw = str(text).strip()
    try:
        if raw.startswith("#") and len(raw) == 7:
            values = [int(raw[i : i + 2], 16) for i in (1, 3, 5)]
        else:
            values = [int(v) for v in raw.split(",")]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise ConfigError(
            f"--pad-color takes a grey level 0..255, R,G,B or #rrggbb (e.g. 128 or 0,0,0); "
            f"got {text!r}"
        )
    return values


def _check_image_size(d: DataConfig) -> None:
    """image_size is N or [H, W] with sides 4..1024; [N, N] becomes N."""
    size = d.image_size
    if isinstance(size, list):
        _check(
            len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in size),
            f"data.image_size must be an integer or [height, width], got {size!r}",
        )
        if size[0] == size[1]:
            d.image_size = size = size[0]
    sides = [size] if isinstance(size, int) else size
    _check(
        all(4 <= v <= 1024 for v in sides),
        f"data.image_size sides must be 4..1024, got {size}",
    )


def parse_padding(value: str | int) -> str | int:
    """Normalise a padding value: 'same', 'valid' or an integer >= 0."""
    if isinstance(value, bool):
        raise ConfigError(f"padding must be 'same', 'valid' or an integer >= 0, got {value!r}")
    if isinstance(value, int):
        _check(value >= 0, f"padding must be >= 0, got {value}")
        return value
    text = str(value).strip().lower()
    if text in ("same", "valid"):
        return text
    try:
        number = int(text)
    except ValueError:
        raise ConfigError(
            f"padding must be 'same', 'valid' or an integer >= 0, got {value!r}"
        ) from None
    _check(number >= 0, f"padding must be >= 0, got {number}")
    return number


def validate(cfg: RunConfig) -> RunConfig:
    """Check every value once, at the edge; returns cfg (with padding normalised)."""
    m, d, t = cfg.model, cfg.data, cfg.train
    _check(len(m.conv) >= 1, "model.conv needs at least one conv block")
    for i, block in enumerate(m.conv):
        name = f"model.conv[{i}]"
        _check(block.filters >= 1, f"{name}.filters must be >= 1, got {block.filters}")
        _check(block.kernel >= 1, f"{name}.kernel must be >= 1, got {block.kernel}")
        _check(block.stride >= 1, f"{name}.stride must be >= 1, got {block.stride}")
        _check(block.pool >= 0, f"{name}.pool must be >= 0, got {block.pool}")
        _check(block.pool_stride >= 0, f"{name}.pool_stride must be >= 0")
        block.padding = parse_padding(block.padding)
    _check(all(u >= 1 for u in m.dense), f"model.dense sizes must be >= 1, got {m.dense}")
    for name, values in (("mean", m.mean), ("std", m.std)):
        _check(
            len(values) in (0, d.channels),
            f"model.{name} needs {d.channels} values (one per channel) or none, got {values}",
        )
    _check(len(m.mean) == len(m.std), "model.mean and model.std need the same length")
    _check(all(v > 0 for v in m.std), f"model.std values must be > 0, got {m.std}")
    _check(0.0 <= m.dropout < 1.0, f"model.dropout must be in [0, 1), got {m.dropout}")
    _check_image_size(d)
    _check(d.channels in (1, 3), f"data.channels must be 1 or 3, got {d.channels}")
    _check(d.resize in RESIZE_POLICIES, f"data.resize must be one of {RESIZE_POLICIES}")
    _check(
        len(d.pad_color) == 3 and all(0 <= v <= 255 for v in d.pad_color),
        f"data.pad_color must be 3 integers 0..255 (R, G, B), got {d.pad_color}",
    )
    _check(0.0 < d.val_fraction < 1.0, f"data.val_fraction must be in (0, 1), got {d.val_fraction}")
    _check(
        d.split_guard in SPLIT_GUARDS,
        f"data.split_guard must be one of {SPLIT_GUARDS}, got {d.split_guard!r}",
    )
    _check(0.0 < d.crop_pct <= 1.0, f"data.crop_pct must be in (0, 1], got {d.crop_pct}")
    _check(
        d.interpolation in INTERPOLATIONS,
        f"data.interpolation must be one of {INTERPOLATIONS}, got {d.interpolation!r}",
    )
    _check(d.cache_memory >= 0, f"data.cache_memory must be >= 0 MiB, got {d.cache_memory}")
    _check(t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}")
    _check(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
    _check(t.optimizer in OPTIMIZERS, f"train.optimizer must be one of {OPTIMIZERS}")
    _check(t.schedule in SCHEDULES, f"train.schedule must be one of {SCHEDULES}")
    _check(t.lr > 0, f"train.lr must be > 0, got {t.lr}")
    _check(t.weight_decay >= 0, f"train.weight_decay must be >= 0, got {t.weight_decay}")
    _check(0 <= t.momentum < 1, f"train.momentum must be in [0, 1), got {t.momentum}")
    _check(t.warmup_epochs >= 0, f"train.warmup_epochs must be >= 0, got {t.warmup_epochs}")
    _check(
        0 <= t.label_smoothing < 1,
        f"train.label_smoothing must be in [0, 1), got {t.label_smoothing}",
    )
    _check(t.patience >= 0, f"train.patience must be >= 0, got {t.patience}")
    _check(t.time_limit >= 0, f"train.time_limit must be >= 0 minutes, got {t.time_limit}")
    _check(t.class_weights in CLASS_WEIGHTS, f"train.class_weights must be one of {CLASS_WEIGHTS}")
    _check(t.sampler in SAMPLERS, f"train.sampler must be one of {SAMPLERS}")
    _check(t.devices >= 0, f"train.devices must be >= 0 (0 = all), got {t.devices}")
    _check(t.shards >= 0, f"train.shards must be >= 0 (0 = one per process), got {t.shards}")
    _check(
        t.shards <= 1 or t.batch_size % t.shards == 0,
        f"train.batch_size {t.batch_size} must be a multiple of train.shards {t.shards}",
    )
    _check(
        t.devices <= 1 or t.batch_size % t.devices == 0,
        f"train.batch_size {t.batch_size} must be a multiple of train.devices {t.devices}",
    )
    _check(t.head_epochs >= 0, f"train.head_epochs must be >= 0, got {t.head_epochs}")
    _check(t.backbone_lr >= 0, f"train.backbone_lr must be >= 0, got {t.backbone_lr}")
    _check(not t.freeze or bool(t.init), "train.freeze needs train.init (--init SOURCE)")
    _check(t.tune_blocks >= 0, f"train.tune_blocks must be >= 0, got {t.tune_blocks}")
    _check(not (t.tune_blocks and t.freeze), "--tune-blocks and --freeze exclude each other")
    _check(0 <= t.seed < 2**32, f"train.seed must be in 0..2^32-1, got {t.seed}")
    _check(
        t.data_placement in DATA_PLACEMENTS,
        f"train.data_placement must be one of {DATA_PLACEMENTS}, got {t.data_placement!r}",
    )
    _check(
        0.0 < t.device_memory_share <= 1.0,
        f"train.device_memory_share must be in (0, 1], got {t.device_memory_share}",
    )
    _check(t.chunk_mb > 0, f"train.chunk_mb must be > 0 MiB, got {t.chunk_mb}")
    _check(
        t.steps_per_dispatch >= 0,
        f"train.steps_per_dispatch must be >= 0 (0 = auto), got {t.steps_per_dispatch}",
    )
    _check(
        t.precision in PRECISIONS,
        f"train.precision must be one of {PRECISIONS}, got {t.precision!r}",
    )
    return cfg


# ---------------------------------------------------------------- dict / TOML round trip


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass tree -> plain dict (TOML-ready)."""
    return dataclasses.asdict(cfg)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build dataclass cls from a dict, rejecting unknown keys with their full name."""
    if not isinstance(data, dict):
        raise ConfigError(f"[{where}] must be a table, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [{where}]: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _coerce(cls, name, value, f"{where}.{name}")
    return cls(**kwargs)


_NESTED = {
    (RunConfig, "model"): ModelConfig,
    (RunConfig, "data"): DataConfig,
    (RunConfig, "train"): TrainConfig,
    (RunConfig, "augment"): AugmentConfig,
    (RunConfig, "log"): LogConfig,
}


def _coerce(cls: type, name: str, value: Any, where: str) -> Any:
    nested = _NESTED.get((cls, name))
    if nested is not None:
        return _build(nested, value, where)
    if cls is ModelConfig and name == "conv":
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list of tables ([[model.conv]])")
        return [_build(ConvBlock, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if cls is ModelConfig and name == "dense":
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise ConfigError(f"{where} must be a list of integers, got {value!r}")
        return list(value)
    if cls is DataConfig and name in ("image_size", "pad_color"):
        ints = isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        if name == "image_size" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if not ints:
            kind = "an integer or [height, width]" if name == "image_size" else "[r, g, b]"
            raise ConfigError(f"{where} must be {kind}, got {value!r}")
        return list(value)
    if cls is ModelConfig and name in ("mean", "std"):
        if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{where} must be a list of numbers, got {value!r}")
        return [float(v) for v in value]
    if cls is AugmentConfig and name == "ops":
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table of op = magnitude")
        return {str(k): float(v) for k, v in value.items()}
    default = next(f for f in dataclasses.fields(cls) if f.name == name).default
    if name == "padding":
        return parse_padding(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(value, bool) and isinstance(value, int):
        return value
    if (
        isinstance(default, float)
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    ):
        return float(value)
    if isinstance(default, str) and isinstance(value, str):
        return value
    raise ConfigError(f"{where} has the wrong type: {value!r} (expected {type(default).__name__})")


def from_dict(data: dict[str, Any]) -> RunConfig:
    """Plain dict -> validated RunConfig; unknown keys are errors."""
    return validate(_build(RunConfig, data, "config"))


def load_toml(path: str | Path) -> RunConfig:
    """Read a config.toml (as written by save_toml) into a validated RunConfig."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def loads_toml(text: str, source: str = "config") -> RunConfig:
    """TOML text (as dumps_toml writes it) -> validated RunConfig; `source` names it in errors."""
    try:
        return from_dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def overlay_toml(base: RunConfig, path: str | Path) -> RunConfig:
    """base with every key a TOML file sets replaced by the file's value (the file wins key
    by key; an [augment] table and a model.conv list replace the whole of base's)."""
    load_toml(path)  # the file alone must be valid; its errors name it
    with Path(path).open("rb") as fh:
        given = tomllib.load(fh)
    data = to_dict(base)
    for section, table in given.items():
        if section == "augment":
            data[section] = table
        else:
            data[section].update(table)
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def file_keys(path: str | Path) -> set[str]:
    """The dotted keys ("train.lr", "model.conv", ...) a TOML config file sets."""
    with Path(path).open("rb") as fh:
        given = tomllib.load(fh)
    return {f"{s}.{k}" for s, table in given.items() if isinstance(table, dict) for k in table}


def dumps_toml(cfg: RunConfig) -> str:
    """RunConfig -> TOML text."""
    import tomli_w

    return tomli_w.dumps(to_dict(cfg))


def save_toml(cfg: RunConfig, path: str | Path) -> None:
    """Write cfg as TOML, atomically."""
    from cnncli.atomic import atomic_write_text

    atomic_write_text(path, dumps_toml(cfg))


def merge_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Apply dotted-key overrides like {'train.lr': 0.01} (flags win over the file)."""
    data = to_dict(cfg)
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return from_dict(data)
