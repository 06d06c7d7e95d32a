"""Decode each image once into a uint8 array: in RAM or memory-mapped, optionally cached on disk."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnncli.atomic import atomic_write_text
from cnncli.data.decode import DecodeError, Resize, as_resize, decode_image

# Bump when decode output changes for the same files, so stale caches are never reused.
CACHE_VERSION = 1
# Below this many images a process pool costs more to start than it saves.
SERIAL_BELOW = 64
MAX_WORKERS = 8


@dataclass
class LoadedImages:
    """Decoded images of one list of files, in the order given."""

    images: np.ndarray  # uint8 (N, S, S, C); an np.memmap when over the memory budget or cached
    ok: np.ndarray  # bool (N,): False where decoding failed (that row is all zeros)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)


def default_workers() -> int:
    """Worker processes to use: the usable CPUs, at most MAX_WORKERS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


def cache_key(root: str | Path, relpaths: list[str], size: int | Resize, channels: int) -> str:
    """sha256 over the decode settings and each file's relative path, size and mtime_ns."""
    digest = hashlib.sha256()
    resize = as_resize(size)
    settings = [CACHE_VERSION, resize.describe(), [*resize.hw], channels, len(relpaths)]
    digest.update(json.dumps(settings).encode())
    root = Path(root)
    for relpath in relpaths:
        try:
            stat = os.stat(root / relpath)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        digest.update(json.dumps([relpath, size, mtime], ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def _decode_chunk(
    root: str, relpaths: list[str], resize: Resize, channels: int
) -> tuple[np.ndarray, list[str | None]]:
    """Decode consecutive files; failed rows stay zero and get a reason (None when fine)."""
    out = np.zeros((len(relpaths), *resize.hw, channels), np.uint8)
    reasons: list[str | None] = []
    for i, relpath in enumerate(relpaths):
        try:
            out[i] = decode_image(Path(root) / relpath, resize, channels)
            reasons.append(None)
        except DecodeError as exc:
            reasons.append(exc.reason)
    return out, reasons


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A worker-process pool that never forks this process (forkserver, or spawn)."""
    # Forking a parent that already runs JAX threads can deadlock.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(workers, mp_context=context)


def submit_all(pool: ProcessPoolExecutor, fn: Callable, jobs: dict[Any, tuple]) -> dict[Any, Any]:
    """pool.submit(fn, *args) for each key -> args; returns {future: key}.

    Workers start during these submits. A Ctrl-C meanwhile is held back until all are
    submitted (a pool half-started when the parent exits makes its workers print
    tracebacks), and the workers inherit a signal mask that keeps SIGINT from them for
    good: only the parent reacts, cancelling what is queued.
    """
    if threading.current_thread() is not threading.main_thread():
        return {pool.submit(fn, *args): key for key, args in jobs.items()}
    held: list[int] = []
    handler = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return {pool.submit(fn, *args): key for key, args in jobs.items()}
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, handler)
        if held:
            raise KeyboardInterrupt


def _decode_into(
    out: np.ndarray,
    root: Path,
    relpaths: list[str],
    resize: Resize,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> list[str | None]:
    """Fill out[i] with relpaths[i] decoded; returns per-file failure reasons (None if fine)."""
    n, channels = out.shape[0], out.shape[3]
    reasons: list[str | None] = [None] * n
    done = 0

    def store(start: int, block: np.ndarray, block_reasons: list[str | None]) -> None:
        nonlocal done
        out[start : start + len(block)] = block
        reasons[start : start + len(block)] = block_reasons
        done += len(block)
        if progress:
            progress(done, n)

    serial = workers <= 1 or n < SERIAL_BELOW
    # A few chunks per worker keeps them all busy without much inter-process overhead.
    size = 1 if serial else max(8, min(256, -(-n // (workers * 4))))
    pending = set(range(0, n, size))
    if not serial:
        pool = process_pool(min(workers, len(pending)))
        try:
            jobs = {
                s: (str(root), relpaths[s : s + size], resize, channels) for s in sorted(pending)
            }
            futures = submit_all(pool, _decode_chunk, jobs)
            for future in as_completed(futures):
                # Pop: a finished future holds its block, and all blocks together are the
                # whole dataset a second time.
                start = futures.pop(future)
                store(start, *future.result())
                pending.discard(start)
        except BrokenProcessPool:
            # A worker died: often a script that starts work on import, without an
            # `if __name__ == "__main__":` guard. Finish in this process instead.
            warnings.warn(
                "image decoding workers stopped; decoding the rest in this process",
                RuntimeWarning,
                stacklevel=3,
            )
        finally:
            # On Ctrl-C, drop the queued chunks instead of decoding them all first.
            pool.shutdown(wait=True, cancel_futures=True)
    for start in sorted(pending):
        store(start, *_decode_chunk(str(root), relpaths[start : start + size], resize, channels))
    return reasons


def _read_cache(cache_dir: Path, key: str, shape: tuple[int, ...]) -> LoadedImages | None:
    array_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        images = np.load(array_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if images.shape != shape or images.dtype != np.uint8 or meta.get("key") != key:
        return None
    ok = np.ones(shape[0], bool)
    skipped = []
    try:
        for index, relpath, reason in meta["skipped"]:
            ok[index] = False
            skipped.append((str(relpath), str(reason)))
    except (KeyError, TypeError, ValueError, IndexError):
        return None  # a damaged sidecar: decode again
    return LoadedImages(images, ok, skipped)


def _write_cache(
    cache_dir: Path,
    key: str,
    images: np.ndarray,
    tmp_array: Path | None,
    failed: list[tuple[int, str, str]],
) -> np.ndarray:
    """Store images as <key>.npy plus <key>.json; returns the array to hand out."""
    array_path, shape = cache_dir / f"{key}.npy", images.shape
    if tmp_array is not None:  # already a memmap on disk: finish it and rename into place
        images.flush()
        del images
        os.replace(tmp_array, array_path)
    else:
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{key}.", suffix=".npy.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, images, allow_pickle=False)
            os.replace(tmp, array_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    # The JSON goes last: its presence marks a complete cache entry.
    meta = {"key": key, "shape": list(shape), "skipped": failed}
    atomic_write_text(cache_dir / f"{key}.json", json.dumps(meta, ensure_ascii=False) + "\n")
    if tmp_array is not None:
        return np.load(array_path, mmap_mode="r", allow_pickle=False)
    return images


def store_rows(
    cache_dir: str | Path,
    root: str | Path,
    loaded: LoadedImages,
    relpaths: list[str],
    rows: np.ndarray,
    size: int | Resize,
    channels: int,
) -> None:
    """Store rows of images decoded once (e.g. a whole data set) as the cache entry that
    load_images(root, relpaths, ...) reads, so a subset (a K-fold split) is not decoded again.

    relpaths[i] is the file of loaded row rows[i]; rows that failed keep their reasons.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(root, relpaths, size, channels)
    reasons = dict(loaded.skipped)
    failed = [
        (i, p, reasons[p])
        for i, (p, r) in enumerate(zip(relpaths, rows, strict=True))
        if not loaded.ok[r]
    ]
    fd, name = tempfile.mkstemp(dir=cache_dir, prefix=f".{key}.", suffix=".npy.tmp")
    os.close(fd)
    shape = (len(rows), *loaded.images.shape[1:])
    try:
        # Copied in blocks into a file-backed array: a memory-mapped source stays on disk.
        out = np.lib.format.open_memmap(name, mode="w+", dtype=np.uint8, shape=shape)
        for start in range(0, len(rows), 256):
            out[start : start + 256] = loaded.images[rows[start : start + 256]]
        _write_cache(cache_dir, key, out, Path(name), failed)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _anonymous_memmap(shape: tuple[int, ...]) -> np.ndarray:
    """A writable memmap in a temporary folder that is removed once the array is dropped."""
    folder = tempfile.mkdtemp(prefix="cnn-images-")
    images = np.lib.format.open_memmap(
        os.path.join(folder, "images.npy"), mode="w+", dtype=np.uint8, shape=shape
    )
    # On POSIX the mapping outlives the file's name, so nothing is left behind on disk.
    if os.name == "posix":
        shutil.rmtree(folder, ignore_errors=True)
    return images


def select_rows(images: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """images[keep] without loading a memory-mapped array into RAM.

    Fancy indexing a memmap returns an in-memory copy of every kept row; over the memory
    budget the rows are copied in blocks into a temporary memmap instead.
    """
    keep = np.asarray(keep, bool)
    if keep.all():
        return images
    if not isinstance(images, np.memmap):
        return images[keep]
    rows = np.flatnonzero(keep)
    out = _anonymous_memmap((len(rows), *images.shape[1:]))
    for start in range(0, len(rows), 256):
        out[start : start + 256] = images[rows[start : start + 256]]
    return out


def load_images(
    root: str | Path,
    relpaths: list[str],
    size: int | Resize,
    channels: int,
    *,
    memory_budget_mb: int = 2048,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LoadedImages:
    """Decode root/relpath for each relpath into uint8 (N, H, W, C), reusing cache_dir's copy.

    size is a Resize (policy and H x W), or an int for a square centre crop.

    Above memory_budget_mb MiB the array is a memmap (in cache_dir, or a temporary folder).
    With cache_dir the result is stored as <key>.npy + <key>.json and reused while no file's
    size or mtime changes. Results do not depend on workers.
    """
    root = Path(root)
    resize = as_resize(size)
    shape = (len(relpaths), *resize.hw, channels)
    over_budget = int(np.prod(shape)) > memory_budget_mb * 2**20
    if not relpaths:
        return LoadedImages(np.zeros(shape, np.uint8), np.zeros(0, bool), [])
    key = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        key = cache_key(root, relpaths, resize, channels)
        cached = _read_cache(cache_dir, key, shape)
        if cached is not None:
            if progress:
                progress(len(relpaths), len(relpaths))
            return cached
    tmp_array = None
    if over_budget and cache_dir is not None:
        fd, name = tempfile.mkstemp(dir=cache_dir, prefix=f".{key}.", suffix=".npy.tmp")
        os.close(fd)
        tmp_array = Path(name)
        images = np.lib.format.open_memmap(tmp_array, mode="w+", dtype=np.uint8, shape=shape)
    elif over_budget:
        images = _anonymous_memmap(shape)
    else:
        images = np.zeros(shape, np.uint8)
    try:
        reasons = _decode_into(
            images, root, relpaths, resize, workers or default_workers(), progress
        )
    except BaseException:
        if tmp_array is not None:
            tmp_array.unlink(missing_ok=True)
        raise
    failed = [(i, relpaths[i], r) for i, r in enumerate(reasons) if r is not None]
    ok = np.array([r is None for r in reasons], bool)
    if cache_dir is not None:
        images = _write_cache(cache_dir, key, images, tmp_array, failed)
    return LoadedImages(images, ok, [(relpath, reason) for _, relpath, reason in failed])
