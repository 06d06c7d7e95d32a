"""Batches for the train loop: seeded epoch order, fixed-shape padded batches, device placement.

One code path for 1..N devices: with N > 1 a `jax.sharding.Mesh` with a "data" axis splits
every batch across the devices and replicates the training state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnncli.config import ConfigError


@dataclass
class SplitArrays:
    """Images (uint8 NHWC, in memory or memory-mapped) and integer labels of one split."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def epoch_order(labels: np.ndarray, seed: int, epoch: int, balanced: bool = False) -> np.ndarray:
    """The sample order of an epoch: a pure function of (labels, seed, epoch).

    Shuffled once-each by default; `balanced` draws len(labels) samples with replacement so
    that every class is drawn equally often in expectation.
    """
    rng = np.random.default_rng([seed, epoch])
    n = len(labels)
    if not balanced:
        return rng.permutation(n)
    counts = np.bincount(labels)
    p = 1.0 / counts[labels]
    return rng.choice(n, size=n, replace=True, p=p / p.sum())


def padded_batches(order: np.ndarray, batch_size: int):
    """Yield (indices, mask) with a fixed batch shape; the last batch is padded and masked."""
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        mask = np.ones(batch_size, np.float32)
        if len(idx) < batch_size:
            mask[len(idx) :] = 0.0
            idx = np.concatenate([idx, np.full(batch_size - len(idx), idx[0])])
        yield idx, mask


def gather(split: SplitArrays, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a (possibly memory-mapped) split, read in sorted order for locality."""
    order = np.argsort(idx, kind="stable")
    images = np.empty((len(idx), *split.images.shape[1:]), np.uint8)
    images[order] = split.images[idx[order]]
    return images, split.labels[idx].astype(np.int32)


class Placement:
    """Puts the state and the batches on 1 device, or on a data-parallel mesh of N devices."""

    def __init__(self, devices: int = 1):
        import jax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        available = jax.devices()
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
        import jax.numpy as jnp

        if self._replicated is None:
            return jax.tree_util.tree_map(jnp.asarray, tree)
        return jax.device_put(tree, self._replicated)

    def batch(self, *arrays: np.ndarray) -> list[Any]:
        """Host arrays -> device arrays, split along the batch axis over the mesh."""
        import jax
        import jax.numpy as jnp

        if self._batch is None:
            return [jnp.asarray(a) for a in arrays]
        return [jax.device_put(a, self._batch) for a in arrays]
