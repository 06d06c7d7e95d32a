"""Batches for the train loop: seeded epoch order, fixed-shape padded batches, device placement.

One code path for 1..N devices and 1..P processes: a `jax.sharding.Mesh` with a "data" axis
splits every batch across the devices (of every process) and replicates the training state.

With `shards` > 1 the data order is made per shard: manifest row r belongs to shard
r % shards, each shard is shuffled on its own, and a global batch is batch_size / shards rows
from every shard in turn. A process then needs only the images of the shards it feeds, and
a one-process run with the same shard count repeats a multi-process run exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnncli.config import ConfigError


@dataclass
class SplitArrays:
    """Images (uint8 NHWC, in memory or memory-mapped) and labels of one split.

    labels: class indices (n,), or in multi-label mode multi-hot float32 rows (n, C).

    rows: each image's row in the split's manifest (default 0..n-1), which fixes its shard;
    manifest_size: rows in the manifest, decodable or not, on every process (default n).
    """

    images: np.ndarray
    labels: np.ndarray
    rows: np.ndarray | None = None
    manifest_size: int | None = None

    def __post_init__(self) -> None:
        if self.rows is None:
            self.rows = np.arange(len(self.labels))
        if self.manifest_size is None:
            self.manifest_size = len(self.labels)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DataShards:
    """How the data order is split: `count` shards, of which this process feeds `owned`."""

    count: int = 1
    owned: tuple[int, ...] = (0,)

    @classmethod
    def for_process(cls, count: int, process: int, processes: int) -> DataShards:
        """Process p of P feeds the contiguous shards [p*count/P, (p+1)*count/P)."""
        if count < processes or count % processes:
            raise ConfigError(
                f"train.shards {count} must be a multiple of the {processes} processes"
            )
        per = count // processes
        return cls(count, tuple(range(process * per, (process + 1) * per)))

    def owns(self, rows: np.ndarray) -> np.ndarray:
        """Which manifest rows this process decodes and trains on."""
        return np.isin(np.asarray(rows) % self.count, self.owned)

    def steps(self, split: SplitArrays, batch_size: int) -> int:
        """Steps per epoch: the same on every process (from manifest sizes when sharded)."""
        if self.count == 1:
            return math.ceil(len(split) / batch_size)
        largest = math.ceil(split.manifest_size / self.count)
        return math.ceil(largest / (batch_size // self.count))


def epoch_order(labels: np.ndarray, seed: int, epoch: int, balanced: bool = False) -> np.ndarray:
    """The sample order of an epoch: a pure function of (labels, seed, epoch).

    Shuffled once-each by default; `balanced` draws len(labels) samples with replacement so
    that every class is drawn equally often in expectation.
    """
    return _draw(labels, np.random.default_rng([seed, epoch]), balanced)


def _draw(labels: np.ndarray, rng: np.random.Generator, balanced: bool) -> np.ndarray:
    """A permutation of range(len(labels)), or a class-balanced draw with replacement."""
    n = len(labels)
    if not balanced:
        return rng.permutation(n)
    if labels.ndim == 2:  # multi-hot: an image is drawn as often as its rarest label wants
        counts = labels.sum(axis=0)
        p = (labels / np.maximum(counts, 1.0)).max(axis=1)
    else:
        counts = np.bincount(labels)
        p = 1.0 / counts[labels]
    return rng.choice(n, size=n, replace=True, p=p / p.sum())


def _pad(idx: np.ndarray, size: int, fill: int) -> tuple[np.ndarray, np.ndarray]:
    """idx padded to `size` with `fill`, and the mask (1 for real rows, 0 for padding)."""
    mask = np.zeros(size, np.float32)
    mask[: len(idx)] = 1.0
    return np.concatenate([idx, np.full(size - len(idx), fill, idx.dtype)]), mask


def padded_batches(order: np.ndarray, batch_size: int):
    """Yield (indices, mask) with a fixed batch shape; the last batch is padded and masked."""
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield _pad(idx, batch_size, idx[0])


def epoch_batches(
    split: SplitArrays,
    seed: int,
    epoch: int,
    batch_size: int,
    shards: DataShards = DataShards(),
    balanced: bool = False,
):
    """Yield (indices into split, mask) for this process's part of each global batch.

    With one shard: epoch_order + padded_batches. With more, each owned shard draws its
    own order (seeded by seed, epoch, shard count and shard) and gives batch_size / shards
    rows per step, padded and masked where the shard runs out.
    """
    if shards.count == 1:
        yield from padded_batches(epoch_order(split.labels, seed, epoch, balanced), batch_size)
        return
    per = batch_size // shards.count
    orders = []
    for shard in shards.owned:
        members = np.flatnonzero(split.rows % shards.count == shard)
        if not len(members):
            raise ValueError("a data shard has no decodable images; use fewer shards or processes")
        rng = np.random.default_rng([seed, epoch, shards.count, shard])
        orders.append(members[_draw(split.labels[members], rng, balanced)])
    for step in range(shards.steps(split, batch_size)):
        pieces = [_pad(order[step * per : (step + 1) * per], per, order[0]) for order in orders]
        yield (
            np.concatenate([idx for idx, _ in pieces]).astype(np.int64),
            np.concatenate([mask for _, mask in pieces]),
        )


def gather(split: SplitArrays, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a (possibly memory-mapped) split, read in sorted order for locality."""
    order = np.argsort(idx, kind="stable")
    images = np.empty((len(idx), *split.images.shape[1:]), split.images.dtype)
    images[order] = split.images[idx[order]]
    labels = split.labels[idx]
    return images, labels if labels.ndim == 2 else labels.astype(np.int32)


class Placement:
    """Puts the state and the batches on 1 device, or on a data-parallel mesh of N devices.

    With several processes (jax.distributed) the mesh spans every device of every process,
    in process order, and each process hands in only its own rows of the global batch.
    """

    def __init__(self, devices: int = 1):
        import jax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        self.processes = jax.process_count()
        available = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
        if self.processes > 1:
            if devices not in (0, 1, len(available)):
                raise ConfigError(
                    f"--devices {devices}: a run over {self.processes} processes uses all "
                    f"{len(available)} of their devices (leave --devices out)"
                )
            devices = len(available)
        self.count = len(available) if devices == 0 else devices
        if self.count > len(available):
            raise ConfigError(
                f"--devices {devices}: only {len(available)} {available[0].platform} device(s) visible (on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N)"
            )
        self._batch = self._replicated = None
        if self.count > 1:
            mesh = Mesh(np.array(available[: self.count]), ("data",))
            self._batch = NamedSharding(mesh, PartitionSpec("data"))
            self._replicated = NamedSharding(mesh, PartitionSpec())

    def state(self, tree: Any) -> Any:
        """The training state, replicated on every device of the mesh."""
        import jax

        if self._replicated is None:
            return jax.device_put(tree)  # jnp.asarray would compile a program per dtype
        return jax.device_put(tree, self._replicated)

    def batch(self, *arrays: np.ndarray) -> list[Any]:
        """Host arrays -> device arrays, split along the batch axis over the mesh.

        With several processes, `arrays` are this process's rows of the global batch.
        """
        import jax

        if self._batch is None:
            return [jax.device_put(a) for a in arrays]
        if self.processes > 1:
            return [jax.make_array_from_process_local_data(self._batch, a) for a in arrays]
        return [jax.device_put(a, self._batch) for a in arrays]
