"""The run configuration's types: dataclasses with defaults, allowed values, ConfigError."""

from __future__ import annotations

from dataclasses import dataclass, field


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


def size_hw(size: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    """An image size (N, or [height, width]) as (height, width)."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)
