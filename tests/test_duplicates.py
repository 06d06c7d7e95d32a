"""Near-duplicates on real photos through `cnn doctor`, and the rules behind them.

The photos are the ants/bees set (../shared/data); the near-duplicates are made from them as
copies happen (tests/near_copies.py). "Objects on one plain board" pastes a different photo's
middle onto the same light, slightly noisy board each time: the pictures TrashNet and
product shots are made of, where a background-dominated perceptual hash called 94 different
objects one group (issue 25).
"""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
from PIL import Image

from cnncli.cli import app
from cnncli.quality.near_duplicates import (
    Features,
    NearPair,
    NearRule,
    layout_agreement,
    similar_pairs,
    star_groups,
)
from tests.conftest import shared_data
from tests.near_copies import EDITS, save_near_copy


def _doctor(runner, *args):
    result = runner.invoke(app, ["doctor", *map(str, args)])
    report = json.loads(result.stdout) if "--json" in args and result.stdout else None
    return result, report


@pytest.fixture(scope="module")
def photos() -> list:
    """24 ants/bees photos (12 of each), sorted."""
    root = shared_data("hymenoptera_data") / "train"
    return sorted((root / "ants").glob("*.jpg"))[:12] + sorted((root / "bees").glob("*.jpg"))[:12]


@pytest.fixture(scope="module")
def made_set(photos, tmp_path_factory):
    """flat/<ants|bees>/ with the 24 photos and one near copy of each kind: (root, pairs)."""
    root = tmp_path_factory.mktemp("made") / "photos"
    rng = random.Random(0)
    pairs = set()
    for photo in photos:
        folder = root / photo.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / photo.name)
    for kind, photo in zip(EDITS, photos[::4], strict=True):
        copy = save_near_copy(root / photo.parent.name / photo.name, kind, rng)
        pairs.add(
            frozenset((f"{photo.parent.name}/{photo.name}", f"{photo.parent.name}/{copy.name}"))
        )
    return root, pairs


def _board_picture(photo, rng: np.random.Generator) -> Image.Image:
    """The middle of a photo, 90-150 px wide, somewhere on a 384 x 512 light grey board."""
    board = np.linspace(226, 238, 512)[:, None, None] + rng.normal(0, 2.0, (512, 384, 1))
    canvas = Image.fromarray(np.clip(board.repeat(3, axis=2), 0, 255).astype(np.uint8))
    with Image.open(photo) as img:
        w, h = img.size
        thing = img.convert("RGB").crop((w // 3, h // 3, 2 * w // 3, 2 * h // 3))
    width = int(rng.integers(90, 151))
    thing = thing.resize((width, max(8, width * thing.height // thing.width)))
    x, y = int(rng.integers(20, 384 - width - 20)), int(rng.integers(40, 512 - thing.height - 40))
    canvas.paste(thing, (x, y))
    return canvas


@pytest.fixture(scope="module")
def board_set(photos, tmp_path_factory):
    """24 different objects on one plain board, in three classes."""
    root = tmp_path_factory.mktemp("board") / "objects"
    rng = np.random.default_rng(0)
    for k, photo in enumerate(photos):
        folder = root / ("cardboard", "glass", "metal")[k % 3]
        folder.mkdir(parents=True, exist_ok=True)
        _board_picture(photo, rng).save(folder / f"{k:03d}.jpg", quality=90)
    return root


def _dhash64(path) -> int:
    grey = np.asarray(Image.open(path).convert("L").resize((9, 8), Image.Resampling.BOX), int)
    return int("".join("1" if v else "0" for v in (grey[:, 1:] > grey[:, :-1]).ravel()), 2)


def test_different_objects_on_one_plain_background_are_not_near_duplicates(runner, board_set):
    files = sorted(board_set.rglob("*.jpg"))
    hashes = [_dhash64(f) for f in files]
    close = sum(bin(a ^ b).count("1") <= 4 for k, a in enumerate(hashes) for b in hashes[k + 1 :])
    assert close >= 10  # the board, not the object, decides a 64-bit dHash: the old false groups
    result, report = _doctor(runner, board_set, "--json")
    assert result.exit_code == 0, result.output
    assert report["duplicates"] == [] and report["near_groups"] == 0


def test_made_near_duplicates_are_found_with_similarity_and_are_not_errors(
    runner, made_set, tmp_path
):
    root, made = made_set
    page = tmp_path / "dups.html"
    result, report = _doctor(runner, root, "--json", "--html", page)
    assert result.exit_code == 0, result.output  # a near-duplicate is checked, not an error
    groups = [g for g in report["duplicates"] if g["kind"] == "near"]
    found = {frozenset((p["a"], p["b"])): p["similarity"] for g in groups for p in g["pairs"]}
    assert len(made & set(found)) >= len(made) - 1, (sorted(found), sorted(made))
    assert set(found) <= made  # nothing else in 24 different photos
    assert all(0.84 <= s <= 1.0 for s in found.values())
    assert max(len(g["files"]) for g in groups) == 2
    html = page.read_text()
    assert html.count("<img") == sum(len(g["files"]) for g in groups)
    assert "Near-duplicates: check these" in html and f"{min(found.values()):.2f}" in html
    text, _ = _doctor(runner, root)
    assert "near-duplicates" in text.output and "check" in text.output
    assert "nothing certain that would hurt training" in " ".join(text.output.split())
    off, plain = _doctor(runner, root, "--json", "--no-near")
    assert off.exit_code == 0 and plain["duplicates"] == [] and plain["near_rule"] is None


def test_identical_files_under_two_classes_are_still_errors(runner, made_set, tmp_path):
    root = tmp_path / "photos"
    shutil.copytree(made_set[0], root)
    ant = sorted((root / "ants").glob("[0-9]*.jpg"))[1]
    shutil.copy(ant, root / "bees" / "same_bytes.jpg")
    with Image.open(ant) as img:  # the same decoded pixels, other bytes (lossless PNG)
        img.save(root / "bees" / "same_pixels.png")
    result, report = _doctor(runner, root, "--json")
    assert result.exit_code == 1, result.output
    certain = [g for g in report["duplicates"] if g["certain"]]
    assert [g["kind"] for g in certain] == ["pixels"] and certain[0]["conflict"]
    paths = {f["path"] for f in certain[0]["files"]}
    assert paths == {f"ants/{ant.name}", "bees/same_bytes.jpg", "bees/same_pixels.png"}
    assert report["conflicts"] == 1
    text, _ = _doctor(runner, root)
    out = " ".join(text.output.split())
    assert text.exit_code == 1 and "identical pixels" in out and "fix these before training" in out


# ---------------------------------------------------------------- the rules, without a network


def _features(head, detail=None, thumbs=None) -> Features:
    head = np.asarray(head, np.float32)
    head /= np.linalg.norm(head, axis=1, keepdims=True)
    n = len(head)
    rng = np.random.default_rng(1)
    if thumbs is None:
        base = rng.normal(size=(16, 16)).astype(np.float32)
        thumbs = np.repeat(base[None], n, axis=0)
    return Features(head, head if detail is None else detail, thumbs, np.ones(n, bool))


def test_star_groups_never_chain():
    # A chain a~b~c~d~e (each only like its neighbours) and a separate pair x~y.
    sims = {(0, 1): 0.95, (1, 2): 0.9, (2, 3): 0.92, (3, 4): 0.91, (5, 6): 0.97}
    pairs = [NearPair(i, j, s, s) for (i, j), s in sims.items()]
    groups = star_groups(pairs)
    linked = {frozenset(k) for k in sims}
    for rep, members in groups:
        assert all(frozenset((rep, m)) in linked for m, _ in members)  # each with the rep
    seen = [i for rep, members in groups for i in (rep, *(m for m, _ in members))]
    assert len(seen) == len(set(seen))  # an image in one group only
    assert max(1 + len(members) for _, members in groups) == 3


def test_a_folder_where_everything_looks_alike_pairs_nothing():
    rng = np.random.default_rng(0)
    common = rng.normal(size=64)
    head = common + 0.25 * rng.normal(size=(40, 64))  # 40 X-ray-like look-alikes
    assert similar_pairs(_features(head)) == []
    head[7] = head[3] + 0.01 * rng.normal(size=64)  # one real copy among them
    (pair,) = similar_pairs(_features(head))
    assert (pair.i, pair.j) == (3, 7) and pair.similarity > 0.99


def test_layouts_must_agree_too():
    rng = np.random.default_rng(2)
    head = rng.normal(size=(20, 32))
    head[1] = head[0]  # features alike ...
    thumbs = rng.normal(size=(20, 16, 16)).astype(np.float32)  # ... pixels unrelated (noise)
    assert similar_pairs(_features(head, thumbs=thumbs)) == []
    thumbs[1] = np.roll(thumbs[0], 1, axis=1)  # the same layout, shifted one cell
    assert [(p.i, p.j) for p in similar_pairs(_features(head, thumbs=thumbs))] == [(0, 1)]
    flat = np.zeros((1, 16, 16), np.float32)
    assert layout_agreement(flat, flat)[0] == 0.0


def test_near_rule_defaults_are_the_measured_ones():
    assert NearRule().to_dict() == {
        "similarity": 0.84,
        "detail": 0.92,
        "neighbours": 10,
        "margin": 0.05,
        "layout": 0.5,
    }
