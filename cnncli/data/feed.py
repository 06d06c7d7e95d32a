"""Where the train split lives during fit, and how each call's batches reach the device.

Every placement keeps loader.epoch_batches' order and masks; only where the gather runs
changes:

- device: the uint8 split is put on the device once; each epoch its (steps, batch) index
  table and masks are put there once, and the compiled step gathers its own batch, so only
  a step number crosses from the host per call.
- chunked: the epoch's images in training order, chunk_mb at a time; the next chunk is
  gathered and put on the device while the device trains on the current one (two in
  flight). Within a chunk the step gathers its batch exactly as on the device path.
- host: numpy gathers each batch and copies it (train._train_epoch); meshes of several
  devices or processes use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnncli.config import ConfigError, TrainConfig
from cnncli.data.loader import SplitArrays, gather

# Images a call trains on when steps_per_dispatch is auto on an accelerator: about 0.2 s
# of the reference CNN at the 500k images/s an H100 should reach.
ACCEL_IMAGES_PER_DISPATCH = 100_000


@dataclass
class Dispatch:
    """One call to the device: `count` steps from row `first` of the index table.

    images/labels are what the step gathers from (the whole split or one chunk); rows and
    mask are (steps, batch) tables on the device; `step` is the epoch's step number of row
    `first`, which keys the augmentation and dropout.
    """

    images: Any
    labels: Any
    rows: Any
    mask: Any
    first: int
    count: int
    step: int


def choose_placement(t: TrainConfig, split: SplitArrays, device_count: int, processes: int) -> str:
    """The placement for this run ("device", "chunked" or "host"): train.data_placement resolved.

    auto: host on a mesh (several devices or processes) and on a CPU, where the step that
    gathers its own batch ran 0.5-1.0x as fast as the host gather plus copy (batch 64,
    benchmarks/device_check.py, docs/performance.md); else device when the uint8 split fits
    device_memory_share of the accelerator's memory, else chunked.
    """
    wanted = t.data_placement
    if device_count > 1 or processes > 1:
        if wanted in ("device", "chunked"):
            raise ConfigError(
                f"--data-placement {wanted} runs on one device; with several devices or "
                "processes leave it at auto (batches are then copied from the host)"
            )
        return "host"
    if wanted != "auto":
        return wanted
    import jax

    device = jax.local_devices()[0]
    if device.platform == "cpu":
        return "host"
    limit = device_memory_limit(device)
    if limit and split.images.nbytes <= t.device_memory_share * limit:
        return "device"
    return "chunked"


def device_memory_limit(device) -> int:
    """Bytes the device can hold (0 where jax does not say, as on a CPU)."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # some backends do not implement memory_stats
        stats = {}
    return int(stats.get("bytes_limit", 0))


def steps_per_dispatch(t: TrainConfig, platform: str, steps: int) -> int:
    """K steps per call: the configured number, or auto (1 on a CPU; ~100k images else)."""
    if t.steps_per_dispatch:
        return max(1, min(t.steps_per_dispatch, steps))
    if platform == "cpu":
        return 1
    return max(1, min(steps, round(ACCEL_IMAGES_PER_DISPATCH / t.batch_size)))


class DeviceFeed:
    """Feeds fit's compiled steps from the device (placement "device" or "chunked")."""

    def __init__(self, split: SplitArrays, placement: str, batch_size: int, chunk_mb: float):
        import jax

        self.split, self.placement, self.batch_size = split, placement, batch_size
        self._put = jax.device_put
        if placement == "device":
            self.images = jax.device_put(np.asarray(split.images))
            self.labels = jax.device_put(_labels(split.labels))
            self.chunk_steps = 0
        else:
            per_batch = batch_size * int(np.prod(split.images.shape[1:]))
            self.chunk_steps = max(1, int(chunk_mb * 2**20) // per_batch)
            local = np.arange(self.chunk_steps * batch_size, dtype=np.int32)
            self._local_rows = jax.device_put(local.reshape(self.chunk_steps, batch_size))

    def describe(self) -> str:
        """Where the data lives, for the line printed at the start of training."""
        mib = f"{self.split.images.nbytes / 2**20:,.1f} MiB uint8"
        if self.placement == "device":
            return f"train split on the device ({mib}, batches gathered in the step)"
        chunk = self.chunk_steps * self.batch_size
        return (
            f"train split streamed to the device in chunks of {chunk:,} images "
            f"({mib} in all, two chunks in flight)"
        )

    def epoch(self, batches, per_call: int) -> Iterator[Dispatch]:
        """The epoch's calls, from loader.epoch_batches' (indices, mask) pairs."""
        pairs = list(batches)
        idx = np.stack([i for i, _ in pairs]).astype(np.int32)
        mask = np.stack([m for _, m in pairs]).astype(np.float32)
        if self.placement == "device":
            rows, masks = self._put(idx), self._put(mask)
            for first in range(0, len(idx), per_call):
                count = min(per_call, len(idx) - first)
                yield Dispatch(self.images, self.labels, rows, masks, first, count, first)
            return
        yield from self._chunks(idx, mask, per_call)

    def _chunks(self, idx: np.ndarray, mask: np.ndarray, per_call: int) -> Iterator[Dispatch]:
        per_call = min(per_call, self.chunk_steps)
        starts = list(range(0, len(idx), self.chunk_steps))
        pending = self._chunk(idx, mask, starts[0])
        for n, start in enumerate(starts):
            images, labels, masks, steps = pending
            for first in range(0, steps, per_call):
                count = min(per_call, steps - first)
                yield Dispatch(images, labels, self._local_rows, masks, first, count, start + first)
                if first == 0 and n + 1 < len(starts):
                    # Gather and send the next chunk while the device trains on this one.
                    pending = self._chunk(idx, mask, starts[n + 1])

    def _chunk(self, idx: np.ndarray, mask: np.ndarray, start: int):
        """(images, labels, masks, steps) of the chunk from step `start`, on the device.

        Chunks have one shape (a short last chunk is padded), so the step compiles once.
        """
        steps = min(self.chunk_steps, len(idx) - start)
        flat = idx[start : start + steps].reshape(-1)
        size = self.chunk_steps * self.batch_size
        padded = np.concatenate([flat, np.full(size - len(flat), flat[0], flat.dtype)])
        images, labels = gather(self.split, padded)
        chunk_mask = np.zeros((self.chunk_steps, self.batch_size), np.float32)
        chunk_mask[:steps] = mask[start : start + steps]
        return (
            self._put(images),
            self._put(_labels(labels)),
            self._put(chunk_mask),
            steps,
        )


def _labels(labels: np.ndarray) -> np.ndarray:
    """Class indices as int32; multi-hot rows stay float32."""
    return labels.astype(np.float32) if labels.ndim == 2 else labels.astype(np.int32)
