"""Checking a run configuration once, at the edge, and parsing the flags that need it."""

from __future__ import annotations

from cnncli.config.types import (
    CLASS_WEIGHTS,
    DATA_PLACEMENTS,
    INTERPOLATIONS,
    OPTIMIZERS,
    PRECISIONS,
    RESIZE_POLICIES,
    SAMPLERS,
    SCHEDULES,
    SPLIT_GUARDS,
    ConfigError,
    DataConfig,
    RunConfig,
)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


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
