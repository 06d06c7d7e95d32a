"""Tests for cnncli.data.cache: serial == parallel, memmap over budget, persistent cache reuse."""

from __future__ import annotations

import os
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest

from cnncli.data import cache
from cnncli.data.cache import SERIAL_BELOW, LoadedImages, cache_key, load_images
from cnncli.data.decode import decode_image
from tests.imagefactory import make_class_tree, make_odd_images


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, list[str]]:
    """A dataset of good images plus the odd/broken ones, relpaths in a fixed order."""
    root = tmp_path_factory.mktemp("tree")
    written = make_class_tree(root, {"red": 40, "green": 40}, size=20)
    relpaths = [p.relative_to(root).as_posix() for paths in written.values() for p in paths]
    relpaths += [f"odd/{name}" for name in sorted(make_odd_images(root / "odd"))]
    return root, relpaths


def test_serial_equals_parallel(tree):
    root, relpaths = tree
    assert len(relpaths) >= SERIAL_BELOW
    calls: list[tuple[int, int]] = []
    serial = load_images(root, relpaths, 16, 3, workers=1)
    parallel = load_images(
        root, relpaths, 16, 3, workers=2, progress=lambda d, t: calls.append((d, t))
    )
    assert isinstance(serial, LoadedImages)
    assert serial.images.shape == (len(relpaths), 16, 16, 3) and serial.images.dtype == np.uint8
    np.testing.assert_array_equal(serial.images, parallel.images)
    np.testing.assert_array_equal(serial.ok, parallel.ok)
    assert serial.skipped == parallel.skipped
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (len(relpaths), len(relpaths))
    # Row i is relpaths[i], decoded by the shared decode path.
    i = relpaths.index("green/004.png")
    np.testing.assert_array_equal(serial.images[i], decode_image(root / relpaths[i], 16, 3))


def test_failures_are_reported(tree, tmp_path):
    root, relpaths = tree
    loaded = load_images(root, relpaths, 12, 1, workers=1)
    failed = {p for p, ok in zip(relpaths, loaded.ok, strict=True) if not ok}
    cases = make_odd_images(tmp_path)  # same cases, written elsewhere to read the outcomes
    assert failed == {f"odd/{name}" for name, outcome in cases.items() if outcome == "skip"}
    assert {p for p, _ in loaded.skipped} == failed
    reasons = dict(loaded.skipped)
    assert reasons["odd/empty.jpg"] == "empty file (0 bytes)"
    assert str(root) not in reasons["odd/truncated.jpg"]  # reasons carry no path
    for index in np.flatnonzero(~loaded.ok):
        assert not loaded.images[index].any()


def test_memmap_when_over_budget(tree, tmp_path):
    root, relpaths = tree
    small = relpaths[:10]
    in_ram = load_images(root, small, 16, 3)
    assert not isinstance(in_ram.images, np.memmap)
    anonymous = load_images(root, small, 16, 3, memory_budget_mb=0)
    assert isinstance(anonymous.images, np.memmap)
    np.testing.assert_array_equal(anonymous.images, in_ram.images)
    cached = load_images(root, small, 16, 3, memory_budget_mb=0, cache_dir=tmp_path / "c")
    assert isinstance(cached.images, np.memmap)
    assert Path(cached.images.filename).parent == tmp_path / "c"
    np.testing.assert_array_equal(cached.images, in_ram.images)
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.endswith(".tmp")]


def test_persistent_cache_is_reused(tree, tmp_path, monkeypatch):
    root, relpaths = tree
    calls = {"n": 0}

    def counting_decode(path, image_size, channels):
        calls["n"] += 1
        return decode_image(path, image_size, channels)

    monkeypatch.setattr(cache, "decode_image", counting_decode)
    cache_dir = tmp_path / "cache"
    first = load_images(root, relpaths, 16, 3, cache_dir=cache_dir, workers=1)
    assert calls["n"] == len(relpaths)
    key = cache_key(root, relpaths, 16, 3)
    array_file, meta_file = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    assert array_file.is_file() and meta_file.is_file()
    stamp = (array_file.stat().st_mtime_ns, meta_file.stat().st_mtime_ns)

    progress: list[tuple[int, int]] = []
    second = load_images(
        root,
        relpaths,
        16,
        3,
        cache_dir=cache_dir,
        workers=1,
        progress=lambda d, t: progress.append((d, t)),
    )
    assert calls["n"] == len(relpaths)  # nothing decoded again
    assert (array_file.stat().st_mtime_ns, meta_file.stat().st_mtime_ns) == stamp
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.ok, first.ok)
    assert second.skipped == first.skipped
    assert progress == [(len(relpaths), len(relpaths))]

    # Other settings are another cache entry.
    load_images(root, relpaths[:5], 8, 1, cache_dir=cache_dir, workers=1)
    assert calls["n"] == len(relpaths) + 5


def test_cache_key_follows_file_changes(tmp_path):
    make_class_tree(tmp_path, {"a": 2, "b": 2}, size=8)
    relpaths = ["a/000.png", "b/000.png"]
    key = cache_key(tmp_path, relpaths, 16, 3)
    assert cache_key(tmp_path, relpaths, 16, 3) == key
    assert cache_key(tmp_path, relpaths, 17, 3) != key
    assert cache_key(tmp_path, relpaths, 16, 1) != key
    assert cache_key(tmp_path, relpaths[::-1], 16, 3) != key
    stat = (tmp_path / "a/000.png").stat()
    os.utime(tmp_path / "a/000.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert cache_key(tmp_path, relpaths, 16, 3) != key


def test_damaged_cache_is_rebuilt(tmp_path):
    make_class_tree(tmp_path / "data", {"a": 2, "b": 2}, size=8)
    relpaths = ["a/000.png", "b/001.png"]
    cache_dir = tmp_path / "cache"
    first = load_images(tmp_path / "data", relpaths, 8, 3, cache_dir=cache_dir)
    key = cache_key(tmp_path / "data", relpaths, 8, 3)
    (cache_dir / f"{key}.json").write_text("{not json")
    again = load_images(tmp_path / "data", relpaths, 8, 3, cache_dir=cache_dir)
    np.testing.assert_array_equal(again.images, first.images)
    assert again.ok.all()


def test_empty_list(tmp_path):
    loaded = load_images(tmp_path, [], 8, 3, cache_dir=tmp_path / "c")
    assert loaded.images.shape == (0, 8, 8, 3) and loaded.ok.shape == (0,)


class _DeadPool:
    """Stands in for ProcessPoolExecutor whose workers all die at once."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def shutdown(self, wait=True, cancel_futures=False):
        pass

    def submit(self, *args, **kwargs):
        future = Future()
        future.set_exception(BrokenProcessPool("worker died"))
        return future


def test_broken_pool_falls_back_to_serial(tree, monkeypatch):
    root, relpaths = tree
    expected = load_images(root, relpaths, 8, 3, workers=1)
    monkeypatch.setattr(cache, "ProcessPoolExecutor", _DeadPool)
    with pytest.warns(RuntimeWarning, match="decoding the rest in this process"):
        loaded = load_images(root, relpaths, 8, 3, workers=2)
    np.testing.assert_array_equal(loaded.images, expected.images)
    assert loaded.skipped == expected.skipped


def test_stored_rows_are_what_a_decode_of_the_subset_gives(tree, tmp_path, monkeypatch):
    from cnncli.data.cache import store_rows
    from cnncli.data.decode import Resize

    root, relpaths = tree
    size = Resize(12, 20, "pad")
    whole = load_images(root, relpaths, size, 3, workers=1)
    bad = int(np.flatnonzero(~whole.ok)[0])
    rows = np.array([5, bad, 0, 41])
    subset = [relpaths[r] for r in rows]
    store_rows(tmp_path / "c", root, whole, subset, rows, size, 3)
    expected = load_images(root, subset, size, 3, workers=1)

    def no_decode(path, image_size, channels):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(cache, "decode_image", no_decode)
    got = load_images(root, subset, size, 3, cache_dir=tmp_path / "c", workers=1)
    np.testing.assert_array_equal(got.images, expected.images)
    np.testing.assert_array_equal(got.ok, expected.ok)
    assert got.skipped == expected.skipped and len(got.skipped) == 1
