"""Inspecting dataset files for the doctor: each file hashed, its header read and decoded
once (in worker processes for many files), a decode failure sorted into a problem kind."""

from __future__ import annotations

import stat
from collections.abc import Callable
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from PIL import Image

from cnncli.data.cache import default_workers, process_pool, submit_all
from cnncli.data.decode import DecodeError, open_image
from cnncli.quality.duplicates import file_sha256

# Images whose shorter side is below this many pixels are reported as tiny.
MIN_SIDE = 8
_SERIAL_BELOW = 32

Progress = Callable[[int, int], None]


def problem_kind(reason: str) -> str:
    """Sort a DecodeError reason into a short category for the report."""
    text = reason.lower()
    for kind, needles in (
        ("empty", ("empty file",)),
        ("unreadable", ("cannot read", "permission", "is a folder")),
        ("too-large", ("too large",)),
        ("not-an-image", ("not an image",)),
    ):
        if any(n in text for n in needles):
            return kind
    if "unsupported" in text:
        return "unsupported"
    return "corrupt"


def inspect_file(root: str, relpath: str, min_side: int = MIN_SIDE) -> dict[str, Any]:
    """Hash, header and decode one file; the fields of a FileCheck except path/split/label."""
    path = Path(root) / relpath
    out: dict[str, Any] = {}
    try:
        info = path.stat()
        out["bytes"] = info.st_size
        if not stat.S_ISREG(info.st_mode):  # a pipe or device could block forever
            return {**out, "problem": "unreadable", "reason": "not a regular file"}
        if info.st_size:
            out["sha256"] = file_sha256(path)
    except OSError as exc:
        reason = f"cannot read file ({exc.strerror or exc})"
        return {**out, "problem": problem_kind(reason), "reason": reason}
    try:
        img = open_image(path, draft_size=32)
    except DecodeError as exc:
        return {**out, "problem": problem_kind(exc.reason), "reason": exc.reason}
    out.update(_header(path))
    width, height = out.get("width") or img.width, out.get("height") or img.height
    if min(width, height) < min_side:
        out["problem"] = "tiny"
        out["reason"] = f"only {width} x {height} pixels (smaller than {min_side} on a side)"
    return out


def _header(path: Path) -> dict[str, Any]:
    """Stored size and mode (before drafting or conversion); empty if the header is odd."""
    try:
        with Image.open(path) as img:
            return {"width": img.width, "height": img.height, "mode": img.mode}
    except Exception:  # open_image already succeeded; this is only for the statistics
        return {}


def _inspect_chunk(root: str, relpaths: list[str], min_side: int) -> list[dict[str, Any]]:
    return [inspect_file(root, rel, min_side) for rel in relpaths]


def inspect_files(
    root: str | Path,
    relpaths: list[str],
    *,
    min_side: int = MIN_SIDE,
    workers: int | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """inspect_file for every path, in parallel worker processes; results in input order."""
    n, root = len(relpaths), str(root)
    results: list[dict[str, Any] | None] = [None] * n
    workers = workers or default_workers()
    size = 1 if workers == 1 or n < _SERIAL_BELOW else max(4, min(128, -(-n // (workers * 4))))
    pending = set(range(0, n, size))
    done = 0

    def store(start: int, block: list[dict[str, Any]]) -> None:
        nonlocal done
        results[start : start + len(block)] = block
        pending.discard(start)
        done += len(block)
        if progress:
            progress(done, n)

    if size > 1:
        pool = process_pool(min(workers, len(pending)))
        try:
            jobs = {s: (root, relpaths[s : s + size], min_side) for s in sorted(pending)}
            futures = submit_all(pool, _inspect_chunk, jobs)
            for future in as_completed(futures):
                store(futures.pop(future), future.result())
        except BrokenProcessPool:
            pass  # a worker died (out of memory?): finish the rest in this process
        finally:
            # On Ctrl-C, drop the queued chunks instead of checking them all first.
            pool.shutdown(wait=True, cancel_futures=True)
    for start in sorted(pending):
        store(start, _inspect_chunk(root, relpaths[start : start + size], min_side))
    return [r or {} for r in results]
