"""`cnn doctor` and the checks behind it: unreadable files, duplicates, leaks, conflicts, stats."""

from __future__ import annotations

import builtins
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from cnncli.cli import app
from cnncli.data.scan import scan_dataset
from cnncli.quality import doctor
from cnncli.quality.file_inspection import problem_kind
from tests.conftest import TINY
from tests.imagefactory import make_class_tree, make_odd_images


def _doctor(runner, *args):
    result = runner.invoke(app, ["doctor", *map(str, args)])
    return result, (json.loads(result.stdout) if "--json" in args and result.stdout else None)


def _photo(path, seed, size=(48, 40)):
    """A noise 'photo' with some structure (a gradient) so its perceptual hash is specific."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize(size, Image.Resampling.BILINEAR)
    img.save(path)
    return path


def test_clean_dataset_exits_0_with_counts_sizes_and_modes(runner, tree3):
    result, report = _doctor(runner, tree3, "--json")
    assert result.exit_code == 0, result.output
    assert report["classes"] == ["blue", "green", "red"]
    assert report["counts"]["red"] == {"train": 10, "val": 2}
    assert report["usable"] == {"blue": 12, "green": 12, "red": 12}
    assert report["imbalance"] == 1.0
    assert (
        report["unreadable"] == [] and report["duplicates"] == [] and not report["hurts_training"]
    )
    assert report["sizes"]["width"] == {"min": 16, "median": 16, "max": 16}
    assert report["modes"] == {"RGB": 36}
    text, _ = _doctor(runner, tree3)
    out = " ".join(text.output.split())
    assert text.exit_code == 0 and "nothing certain that would hurt training" in out


def test_unreadable_files_are_named_with_reason_and_exit_1(runner, tmp_path):
    root = tmp_path / "data"
    make_class_tree(root, {"a": 4, "b": 4}, size=16)
    expected = make_odd_images(root / "a")
    result, report = _doctor(runner, root, "--json")
    assert result.exit_code == 1, result.output
    bad = {e["path"]: e for e in report["unreadable"]}
    assert set(bad) == {f"a/{n}" for n, outcome in expected.items() if outcome == "skip"}
    assert bad["a/empty.jpg"]["problem"] == "empty"
    assert bad["a/truncated.jpg"]["problem"] == "corrupt"
    assert bad["a/page.png"]["problem"] == "not-an-image" and "HTML" in bad["a/page.png"]["reason"]
    assert bad["a/bomb.png"]["problem"] == "too-large"
    assert [e["path"] for e in report["tiny"]] == ["a/tiny_1x1.png"]
    assert report["mixed_modes"]["a"]["grey"] >= 5  # greyscale files beside RGB ones
    assert {"CMYK", "P", "I;16"} <= set(report["modes"])
    text, _ = _doctor(runner, root)
    assert "a/truncated.jpg" in text.output and "fix these before training" in text.output


def test_exact_duplicate_across_classes_is_a_conflict(runner, tree3):
    shutil.copy(tree3 / "red" / "000.png", tree3 / "blue" / "also_red.png")
    result, report = _doctor(runner, tree3, "--json")
    assert result.exit_code == 1
    (group,) = report["duplicates"]
    assert group["kind"] == "exact" and group["conflict"]
    assert {f["path"] for f in group["files"]} == {"red/000.png", "blue/also_red.png"}


def test_reencoded_copy_in_val_is_a_near_duplicate_leak_to_check(runner, tmp_path):
    root = tmp_path / "ds"
    for split in ("train", "val"):
        for label in ("ants", "bees"):
            (root / split / label).mkdir(parents=True)
    for i in range(6):
        _photo(root / "train" / "ants" / f"{i}.png", i)
        _photo(root / "train" / "bees" / f"{i}.png", 100 + i)
    for i in range(2):
        _photo(root / "val" / "ants" / f"v{i}.png", 200 + i)
        _photo(root / "val" / "bees" / f"v{i}.png", 300 + i)
    # The same picture, resized and saved as JPEG: other bytes, same content.
    img = Image.open(root / "train" / "bees" / "3.png").resize((60, 50))
    img.save(root / "val" / "bees" / "copy.jpg", quality=85)
    result, report = _doctor(runner, root, "--json")
    assert result.exit_code == 0, result.output  # likely, not certain: listed, not an error
    (group,) = report["duplicates"]
    assert group["kind"] == "near" and not group["certain"]
    assert group["leak"] and not group["conflict"]
    assert report["near_leaks"] == 1 and report["leaks"] == 0
    (pair,) = group["pairs"]
    assert {pair["a"], pair["b"]} == {"train/bees/3.png", "val/bees/copy.jpg"}
    assert pair["similarity"] >= doctor.NearRule().similarity
    text, _ = _doctor(runner, root)
    assert "check (leak): near-duplicates of" in " ".join(text.output.split())
    for flags in (["--no-near"], ["--near-distance", "-1"]):  # -1: the old way to turn it off
        off, report_off = _doctor(runner, root, "--json", *flags)
        assert off.exit_code == 0 and report_off["duplicates"] == []


def test_duplicate_within_one_class_and_split_is_only_a_warning(runner, tmp_path):
    root = tmp_path / "ds"
    make_class_tree(root / "train", {"x": 4, "y": 4}, size=16)
    make_class_tree(root / "val", {"x": 2, "y": 2}, size=16, seed=1)
    shutil.copy(root / "train" / "x" / "000.png", root / "train" / "x" / "again.png")
    result, report = _doctor(runner, root, "--json")
    assert result.exit_code == 0
    (group,) = report["duplicates"]
    assert not group["leak"] and not group["conflict"]


def test_noise_images_are_not_near_duplicates(tmp_path):
    make_class_tree(tmp_path / "d", {"a": 40, "b": 40}, size=32)
    report = doctor.check_dataset(scan_dataset(tmp_path / "d"), workers=2)
    assert report.duplicates == []
    assert len(report.files) == 80 and report.near_rule == doctor.NearRule()


def test_permission_denied_is_reported_even_when_running_as_root(tmp_path, monkeypatch):
    root = tmp_path / "d"
    make_class_tree(root, {"a": 3, "b": 3}, size=16)
    locked = str(root / "a" / "001.png")
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if str(file) == locked:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    report = doctor.check_dataset(scan_dataset(root), workers=1)
    (bad,) = report.unreadable
    assert bad.path == "a/001.png" and bad.problem == "unreadable"
    assert "Permission denied" in bad.reason and report.hurts_training


def test_quick_check_hashes_only_files_whose_sizes_collide(tmp_path, monkeypatch):
    root = tmp_path / "d"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f"{i}.png").write_bytes(b"x" * (10 * i + (label == "b") + 1))
    shutil.copy(root / "a" / "0.png", root / "b" / "dup.png")
    hashed = []
    real = doctor.file_sha256
    monkeypatch.setattr(doctor, "file_sha256", lambda p: hashed.append(p) or real(p))
    groups = doctor.quick_check(scan_dataset(root))
    assert len(hashed) == 2  # a/0.png and b/dup.png; every other size is unique
    (group,) = groups
    assert group.conflict and {p for p, _, _ in group.files} == {"a/0.png", "b/dup.png"}


def test_train_warns_about_a_conflict_before_training(runner, tree3, tmp_path):
    shutil.copy(tree3 / "red" / "000.png", tree3 / "green" / "looks_red.png")
    result = runner.invoke(
        app, ["train", str(tree3), "--out", str(tmp_path / "run"), "--epochs", "1", *TINY]
    )
    assert result.exit_code == 0, result.output
    assert "warning: conflicting labels" in result.output
    assert "green/looks_red.png" in result.output and "cnn doctor" in result.output


def test_doctor_usage_errors_are_one_line_exit_2(runner, tmp_path):
    result, _ = _doctor(runner, tmp_path / "missing")
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "d").mkdir()
    result, _ = _doctor(runner, tmp_path / "d", "--near-distance", "4")
    assert result.exit_code == 2 and "--near-similarity" in result.output
    result, _ = _doctor(runner, tmp_path / "d", "--near-similarity", "1.5")
    assert result.exit_code == 2 and "--near-similarity" in result.output


@pytest.mark.parametrize(
    "reason, kind",
    [
        ("empty file (0 bytes)", "empty"),
        ("cannot read file (permission denied)", "unreadable"),
        ("image too large (9 x 9 pixels, limit 1 pixels)", "too-large"),
        ("not an image: the file holds plain text", "not-an-image"),
        ("unsupported image mode 'X' (y)", "unsupported"),
        ("corrupt or truncated image (OSError: z)", "corrupt"),
    ],
)
def test_problem_kinds(reason, kind):
    assert problem_kind(reason) == kind
