"""Tests for cnncli.data.scan (+ walk, split): layouts, seeded stratified splits, errors, symlinks, manifests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from PIL import Image

from cnncli.data import walk
from cnncli.data.scan import (
    DatasetError,
    class_counts,
    read_manifest,
    scan_dataset,
    write_manifest,
)
from cnncli.data.split import stratified_split
from tests.imagefactory import make_class_tree


def _png(path: Path, colour=(200, 10, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path, "PNG")
    return path


def _all_paths(dataset) -> list[str]:
    return sorted(p for items in dataset.splits.values() for p, _ in items)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path.resolve() / "data"


def test_flat_layout_stratified_counts(root):
    make_class_tree(root, {"cat": 10, "dog": 5, "emu": 2})
    ds = scan_dataset(root, val_fraction=0.2, seed=0)
    assert ds.layout == "flat"
    assert ds.root == root
    assert ds.classes == ["cat", "dog", "emu"]
    assert class_counts(ds) == {
        "cat": {"train": 8, "val": 2},
        "dog": {"train": 4, "val": 1},
        "emu": {"train": 1, "val": 1},  # at least one of each, even at 0.2
    }
    train, val = ds.splits["train"], ds.splits["val"]
    assert not {p for p, _ in train} & {p for p, _ in val}
    assert train == sorted(train) and val == sorted(val)
    for path, label in train + val:
        assert path.split("/")[0] == ds.classes[label]
        assert (root / path).is_file()


def test_split_is_deterministic_and_independent_of_creation_order(tmp_path):
    names = [f"img{i:02d}.png" for i in range(12)]
    a, b = tmp_path / "a", tmp_path / "b"
    for cls in ("x", "y"):
        for name in names:
            _png(a / cls / name)
        for name in reversed(names):  # created in the opposite order
            _png(b / cls / name)
    first = scan_dataset(a, seed=3)
    assert scan_dataset(a, seed=3).splits == first.splits
    assert scan_dataset(b, seed=3).splits == first.splits
    other = scan_dataset(a, seed=4)
    assert other.splits != first.splits
    assert _all_paths(other) == _all_paths(first)


def test_stratified_split_function():
    items = [(f"a/{i}.png", 0) for i in range(7)] + [(f"b/{i}.png", 1) for i in range(3)]
    train, val = stratified_split(items, 0.3, seed=1)
    assert sorted(train + val) == sorted(items)
    assert sum(1 for _, y in val if y == 0) == 2 and sum(1 for _, y in val if y == 1) == 1
    assert stratified_split(list(reversed(items)), 0.3, seed=1) == (train, val)


@pytest.mark.parametrize("val_name", ["val", "valid", "validation"])
def test_split_layout_with_val_folder(root, val_name):
    make_class_tree(root / "train", {"a": 4, "b": 3})
    make_class_tree(root / val_name, {"a": 2, "b": 1}, seed=1)
    ds = scan_dataset(root)
    assert ds.layout == "split"
    assert ds.classes == ["a", "b"]
    assert class_counts(ds) == {"a": {"train": 4, "val": 2}, "b": {"train": 3, "val": 1}}
    assert all(p.startswith(f"{val_name}/") for p, _ in ds.splits["val"])
    assert "test" not in ds.splits


def test_split_layout_with_test_and_missing_val_class(root):
    make_class_tree(root / "train", {"a": 3, "b": 3})
    make_class_tree(root / "val", {"a": 2})  # no val images for b: allowed
    make_class_tree(root / "test", {"b": 2})
    ds = scan_dataset(root)
    assert class_counts(ds) == {
        "a": {"train": 3, "val": 2, "test": 0},
        "b": {"train": 3, "val": 0, "test": 2},
    }
    assert all(p.startswith("test/b/") for p, _ in ds.splits["test"])


def test_split_layout_without_val_splits_train(root):
    make_class_tree(root / "train", {"a": 10, "b": 10})
    ds = scan_dataset(root, val_fraction=0.3)
    assert ds.layout == "split"
    assert class_counts(ds) == {"a": {"train": 7, "val": 3}, "b": {"train": 7, "val": 3}}
    assert all(p.startswith("train/") for p in _all_paths(ds))


def test_flat_class_named_train_with_images_stays_flat(root):
    make_class_tree(root, {"train": 3, "test": 3})
    ds = scan_dataset(root)
    assert ds.layout == "flat" and ds.classes == ["test", "train"]


def test_hidden_nested_uppercase_and_non_images(root):
    _png(root / "a" / "one.PNG")
    Image.new("RGB", (8, 8)).save(root / "a" / "two.JpEg", "JPEG")
    _png(root / "a" / "deep" / "er" / "three.png")
    _png(root / "a" / ".hidden.png")
    _png(root / "a" / ".cache" / "four.png")
    (root / "a" / "notes.txt").write_text("hi")
    _png(root / "b" / "x.tif")
    _png(root / "b" / "y.webp")
    _png(root / ".git" / "objects" / "z.png")
    _png(root / "stray.png")
    ds = scan_dataset(root)
    assert ds.classes == ["a", "b"]
    assert _all_paths(ds) == [
        "a/deep/er/three.png",
        "a/one.PNG",
        "a/two.JpEg",
        "b/x.tif",
        "b/y.webp",
    ]
    reasons = dict(ds.ignored)
    assert reasons[".git"] == "hidden"
    assert reasons["a/.hidden.png"] == "hidden"
    assert reasons["a/.cache"] == "hidden"
    assert "not an image" in reasons["a/notes.txt"]
    assert "outside any class folder" in reasons["stray.png"]


def test_unicode_and_space_class_names(root):
    make_class_tree(root, {"chat noir 猫": 3, 'Ünïcode, "quoted"': 3})
    ds = scan_dataset(root)
    assert ds.classes == sorted(["chat noir 猫", 'Ünïcode, "quoted"'])


def test_empty_class_folder_is_ignored(root):
    make_class_tree(root, {"a": 3, "b": 3})
    (root / "empty").mkdir()
    (root / "only_text").mkdir()
    (root / "only_text" / "readme.md").write_text("x")
    ds = scan_dataset(root)
    assert ds.classes == ["a", "b"]
    assert ("empty", "class folder has no images") in ds.ignored
    assert ("only_text", "class folder has no images") in ds.ignored


def _error(root) -> str:
    with pytest.raises(DatasetError) as info:
        scan_dataset(root)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_error_missing_and_not_a_folder(tmp_path):
    assert str(tmp_path / "nope") in _error(tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(b"x")
    assert f"{tmp_path / 'file.png'}: not a folder" in _error(tmp_path / "file.png")


def test_error_no_images(root):
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.txt").write_text("no")
    message = _error(root)
    assert str(root) in message and "no images found" in message


def test_error_one_class(root):
    make_class_tree(root, {"lonely": 4})
    (root / "empty").mkdir()
    message = _error(root)
    assert str(root) in message and "'lonely'" in message and "at least 2" in message


def test_error_class_with_one_image(root):
    make_class_tree(root, {"a": 5, "b": 1})
    assert _error(root) == f"class 'b' ({root / 'b'}) has 1 image; need at least 2 to split"


def test_error_split_layout_train_class_with_one_image(root):
    make_class_tree(root / "train", {"a": 5, "b": 1})
    assert f"({root / 'train' / 'b'}) has 1 image" in _error(root)


def test_error_val_class_not_in_train(root):
    make_class_tree(root / "train", {"a": 2, "b": 2})
    make_class_tree(root / "val", {"a": 1, "c": 1})
    assert str(root / "val" / "c") in _error(root)


def test_error_two_val_folders(root):
    make_class_tree(root / "train", {"a": 2, "b": 2})
    make_class_tree(root / "val", {"a": 1})
    make_class_tree(root / "valid", {"a": 1})
    message = _error(root)
    assert str(root / "val") in message and str(root / "valid") in message


def test_error_bad_val_fraction(root):
    make_class_tree(root, {"a": 2, "b": 2})
    with pytest.raises(DatasetError, match="val_fraction"):
        scan_dataset(root, val_fraction=1.0)


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_symlinks_outside_root_skipped_unless_followed(tmp_path, root):
    make_class_tree(root, {"a": 2, "b": 2})
    outside = tmp_path.resolve() / "outside"
    _png(outside / "far.png")
    os.symlink(outside / "far.png", root / "a" / "link.png")
    os.symlink(outside, root / "b" / "linkdir")
    os.symlink(root / "a" / "000.png", root / "b" / "inside.png")  # inside the root: kept
    ds = scan_dataset(root)
    reasons = dict(ds.ignored)
    assert "outside the dataset" in reasons["a/link.png"]
    assert "outside the dataset" in reasons["b/linkdir"]
    assert "b/inside.png" in _all_paths(ds)
    followed = scan_dataset(root, follow_symlinks=True)
    assert {"a/link.png", "b/linkdir/far.png"} <= set(_all_paths(followed))


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_symlink_loop_does_not_hang(root):
    make_class_tree(root, {"a": 2, "b": 2})
    os.symlink(root / "a", root / "a" / "loop")
    os.symlink(root, root / "b" / "up")
    os.symlink(root / "b" / "missing", root / "b" / "broken.png")
    ds = scan_dataset(root, follow_symlinks=True)
    counts = class_counts(ds)
    assert counts == {"a": {"train": 1, "val": 1}, "b": {"train": 1, "val": 1}}
    reasons = dict(ds.ignored)
    assert "symlink loop" in reasons["a/loop"]
    assert "symlink loop" in reasons["b/up"]
    assert reasons["b/broken.png"] == "broken symlink"


def test_unreadable_folder_is_recorded(root, monkeypatch):
    make_class_tree(root, {"a": 2, "b": 2})
    _png(root / "b" / "locked" / "x.png")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(walk.os, "scandir", scandir)
    ds = scan_dataset(root)
    assert ("b/locked", "cannot read folder (Permission denied)") in ds.ignored
    assert "b/locked/x.png" not in _all_paths(ds)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads all")
def test_unreadable_folder_real_permissions(root):
    make_class_tree(root, {"a": 2, "b": 2})
    locked = root / "b" / "locked"
    _png(locked / "x.png")
    locked.chmod(0)
    try:
        ds = scan_dataset(root)
    finally:
        locked.chmod(0o755)
    assert any(p == "b/locked" for p, _ in ds.ignored)


def test_manifest_round_trip(tmp_path, root):
    make_class_tree(root / "train", {'zeta, "z"': 3, "alpha 猫": 3, "mid": 2})
    make_class_tree(root / "val", {"alpha 猫": 1, "mid": 1})  # zeta has no val images
    (root / "train" / "mid" / "notes.txt").write_text("x")
    ds = scan_dataset(root)
    assert ds.classes == ["alpha 猫", "mid", 'zeta, "z"']
    manifest = tmp_path / "split.csv"
    write_manifest(ds, manifest)
    lines = manifest.read_text(encoding="utf-8").splitlines()
    assert "split,label,class,path" in lines
    assert read_manifest(manifest, root) == ds
    # Relocated data: same split, new root.
    moved = read_manifest(manifest, tmp_path / "elsewhere")
    assert moved.splits == ds.splits and moved.root == (tmp_path / "elsewhere").resolve()


def test_manifest_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("split,label,class,path\n")
    with pytest.raises(DatasetError, match="not a cnn manifest"):
        read_manifest(bad, tmp_path)
    with pytest.raises(DatasetError, match="cannot read manifest"):
        read_manifest(tmp_path / "missing.csv", tmp_path)
