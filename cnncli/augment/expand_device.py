"""`cnn augment`'s device work: planned jobs padded into square size buckets and augmented
in fixed-size batches (one compile per bucket), each output's key folded from its path and k."""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cnncli.augment import ops as augment
from cnncli.augment.expand_paths import ExpandError
from cnncli.augment.expand_plan import Job
from cnncli.data.decode import DecodeError, open_image

# Pixels per device batch (padded); bounds memory for large photos.
PIXEL_BUDGET = 1 << 22
MAX_BATCH = 32


def _bucket_side(n: int) -> int:
    """The square bucket's side for an image whose longer side is n: 32, 48, 64, 96, 128, ...

    Compiles cost seconds and padded pixels only milliseconds, so buckets are few and coarse.
    """
    side = 32
    while side < n:
        side = side * 3 // 2 if side & (side - 1) == 0 else side * 4 // 3
    return side


def _path_id(rel: str) -> int:
    return int.from_bytes(hashlib.blake2b(rel.encode("utf-8"), digest_size=4).digest(), "little")


@functools.lru_cache(maxsize=8)
def _augment_step(ops_items: tuple[tuple[str, float], ...], fill: str) -> Callable:
    ops = dict(ops_items)

    @jax.jit
    def step(base_key, images, path_ids, ks, sizes):
        fold = jax.random.fold_in
        keys = jax.vmap(lambda p, k: fold(fold(base_key, p), k))(path_ids, ks)
        params = augment.sample_params(keys, ops)
        pixels = augment.apply_params(images, params, ops, fill, sizes)
        return jnp.round(pixels).astype(jnp.uint8), params

    return step


def _batches(
    jobs: list[Job], shapes: Mapping[str, tuple[int, int, int]]
) -> Iterator[tuple[tuple[int, int, int], int, list[Job]]]:
    """(bucket shape, batch size, jobs) with jobs grouped by bucket, in a fixed order."""
    buckets: dict[tuple[int, int, int], list[Job]] = defaultdict(list)
    for job in jobs:
        h, w, c = shapes[job.source.rel]
        side = _bucket_side(max(h, w))
        buckets[(side, side, c)].append(job)
    for shape in sorted(buckets):
        members = sorted(buckets[shape], key=lambda j: (j.source.rel, j.k))
        # A fixed batch per bucket: one compile per bucket, whatever the job count.
        size = max(1, min(MAX_BATCH, PIXEL_BUDGET // (shape[0] * shape[1])))
        for start in range(0, len(members), size):
            yield shape, size, members[start : start + size]


def augment_jobs(
    src_root: Path,
    jobs: list[Job],
    shapes: Mapping[str, tuple[int, int, int]],
    ops: dict[str, float],
    seed: int,
    fill: str,
) -> Iterator[tuple[Job, np.ndarray, dict[str, np.ndarray]]]:
    """Yield (job, uint8 image at its own size, its sampled parameters)."""
    step = _augment_step(tuple(ops.items()), fill)
    base_key = jax.random.PRNGKey(seed)
    for (bh, bw, c), size, chunk in _batches(jobs, shapes):
        images = np.zeros((size, bh, bw, c), np.uint8)
        sizes = np.tile(np.array([bh, bw], np.int32), (size, 1))
        path_ids = np.zeros(size, np.uint32)
        ks = np.zeros(size, np.uint32)
        decoded: dict[str, np.ndarray] = {}
        for i, job in enumerate(chunk):
            rel = job.source.rel
            if rel not in decoded:
                try:
                    img = np.asarray(open_image(src_root / rel), np.uint8)
                except DecodeError as exc:
                    raise ExpandError(f"{exc} (the file changed while augmenting)") from None
                decoded[rel] = img.reshape(img.shape[0], img.shape[1], c)
            h, w, _ = shapes[rel]
            images[i, :h, :w] = decoded[rel]
            sizes[i] = (h, w)
            path_ids[i] = _path_id(rel)
            ks[i] = job.k
        pixels, params = step(base_key, images, path_ids, ks, sizes)
        pixels = np.asarray(pixels)
        params = {name: np.asarray(v) for name, v in params.items()}
        for i, job in enumerate(chunk):
            h, w, _ = shapes[job.source.rel]
            yield job, pixels[i, :h, :w], {name: v[i] for name, v in params.items()}
