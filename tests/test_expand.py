"""`cnn augment SRC OUT` end to end: counts, balancing, manifest, safety, determinism, splits."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnncli.augment import ops as augment
from cnncli.augment.expand import expand_dataset
from cnncli.augment.expand_paths import MANIFEST_NAME, ExpandError
from cnncli.cli import app

# One op set for every run, so the jitted step compiles once per bucket for the whole file.
OPS = "flip,translate=0.1,rotate=10,brightness=0.2"
SIZE = (24, 20)  # (width, height): one 32x32 bucket

runner = CliRunner()


def make_image(path: Path, seed: int, mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    shape = (SIZE[1], SIZE[0]) + ((3,) if mode == "RGB" else ())
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def make_flat(root: Path) -> Path:
    """cat: 3 images (one grayscale), dog: 5 images; PNG and JPEG."""
    for i in range(3):
        make_image(root / "cat" / f"c{i}.{'png' if i else 'jpg'}", i, "L" if i == 2 else "RGB")
    for i in range(5):
        make_image(root / "dog" / f"d{i}.{'jpg' if i % 2 else 'png'}", 10 + i)
    return root


def hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def manifest(out: Path) -> list[dict[str, str]]:
    with (out / MANIFEST_NAME).open(newline="") as fh:
        return list(csv.DictReader(fh))


def cnn_augment(*args: str | Path):
    return runner.invoke(app, ["augment", *map(str, args)])


def augment_ok(*args: str | Path):
    result = cnn_augment(*args)
    assert result.exit_code == 0, result.output
    return result


def files_in(folder: Path, pattern: str = "*") -> list[str]:
    return sorted(p.name for p in folder.glob(pattern) if p.is_file())


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return make_flat(tmp_path / "src")


def test_per_image_writes_k_new_images_and_copies(src: Path, tmp_path: Path):
    before = hashes(src)
    out = tmp_path / "out"
    result = cnn_augment(src, out, "--per-image", "2", "--ops", OPS)
    assert result.exit_code == 0, result.output
    stems_exts = [("c0", ".jpg"), ("c1", ".png"), ("c2", ".png")]
    expected = [f"{stem}{tag}{ext}" for stem, ext in stems_exts for tag in ("", "__aug0", "__aug1")]
    assert files_in(out / "cat") == sorted(expected)
    assert len(files_in(out / "dog", "*__aug*")) == 10 and len(files_in(out / "dog")) == 15
    assert Image.open(out / "cat" / "c2__aug1.png").mode == "L"
    assert Image.open(out / "dog" / "d1__aug0.jpg").size == SIZE
    assert hashes(src) == before  # sources untouched
    assert (out / "cat" / "c0.jpg").read_bytes() == (src / "cat" / "c0.jpg").read_bytes()

    rows = manifest(out)
    on_disk = {k for k in hashes(out) if k != MANIFEST_NAME}
    assert {r["output"] for r in rows} == on_disk
    for row in rows:
        assert (src / row["source"]).is_file()
        if row["kind"] == "augmented":
            assert row["output"].startswith(row["source"].rsplit(".", 1)[0] + "__aug")
            assert row["seed"] == "0" and row["ops"] == augment.format_ops(augment.parse_ops(OPS))
            assert "rotate=" in row["params"] and "translate_x=" in row["params"]
    assert "cat" in result.output and "new images" in result.output


def test_target_per_class_balances_and_reruns_identically(src: Path, tmp_path: Path):
    out = tmp_path / "out"
    augment_ok(src, out, "--target-per-class", "7", "--ops", OPS)
    assert len(files_in(out / "cat")) == 7 and len(files_in(out / "dog")) == 7
    assert len(files_in(out / "cat", "*__aug*")) == 4  # 3 originals + 4 new
    first = hashes(out)
    # A re-run into the same OUT, and one into a fresh folder, write the same bytes.
    rerun = cnn_augment(src, out, "--target-per-class", "7", "--ops", OPS)
    assert rerun.exit_code == 0 and "already identical" in rerun.output
    assert hashes(out) == first
    augment_ok(src, tmp_path / "out2", "--target-per-class", "7", "--ops", OPS)
    assert hashes(tmp_path / "out2") == first
    # Another seed gives other pixels.
    augment_ok(src, tmp_path / "out3", "--target-per-class", "7", "--ops", OPS, "--seed", "1")
    assert hashes(tmp_path / "out3")["dog/d0__aug0.png"] != first["dog/d0__aug0.png"]
    # A class already at N gets nothing new.
    out4 = tmp_path / "out4"
    augment_ok(src, out4, "--target-per-class", "4", "--ops", OPS, "--no-originals")
    assert files_in(out4 / "cat") == ["c0__aug0.jpg"] and not (out4 / "dog").exists()


def test_offline_output_is_the_training_op_on_the_same_key(src: Path, tmp_path: Path):
    """No second implementation: an output equals apply_params on the image with its key."""
    from cnncli.augment.expand_device import _path_id

    out = tmp_path / "out"
    expand_dataset(src, out, ops=augment.parse_ops(OPS), per_image=1, seed=3, copy_originals=False)
    ops = augment.parse_ops(OPS)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(3), _path_id("dog/d0.png")), 0)
    params = augment.sample_params(key[None], ops)
    image = np.asarray(Image.open(src / "dog" / "d0.png"))[None]
    expected = np.round(np.asarray(augment.apply_params(image, params, ops, "reflect")))[0]
    written = np.asarray(Image.open(out / "dog" / "d0__aug0.png"), np.float32)
    assert np.abs(written - expected).max() <= 1.0


def test_out_inside_or_equal_src_is_refused(src: Path):
    for out in (src / "augmented", src, src / "cat" / "x"):
        result = cnn_augment(src, out, "--per-image", "1", "--ops", OPS)
        assert result.exit_code == 2
        assert "SRC" in result.output and "Traceback" not in result.output
    assert not (src / "augmented").exists()


def test_user_errors_are_one_line_exit_2(src: Path, tmp_path: Path):
    cases = [
        (["--per-image", "1", "--ops", "flip,blur"], "unknown augmentation op 'blur'"),
        (["--per-image", "1", "--preset", "heavy"], "unknown augmentation preset"),
        (["--ops", OPS], "exactly one of --per-image"),
        (["--per-image", "1", "--target-per-class", "5"], "exactly one of"),
        (["--per-image", "1", "--preset", "none"], "no augmentation ops"),
        (["--per-image", "0"], "--per-image must be >= 1"),
    ]
    for args, message in cases:
        result = cnn_augment(src, tmp_path / "out", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
    missing = cnn_augment(tmp_path / "nope", tmp_path / "out", "--per-image", "1")
    assert missing.exit_code == 2 and "not a folder" in missing.output


def test_foreign_files_in_out_are_never_overwritten(src: Path, tmp_path: Path):
    out = tmp_path / "out"
    (out / "dog").mkdir(parents=True)
    (out / "dog" / "d0__aug0.png").write_bytes(b"mine")
    result = cnn_augment(src, out, "--per-image", "1", "--ops", OPS)
    assert result.exit_code == 2 and "not listed in" in result.output
    assert (out / "dog" / "d0__aug0.png").read_bytes() == b"mine"
    with pytest.raises(ExpandError, match="not a cnn augment manifest"):
        (out / MANIFEST_NAME).write_text("something else\n")
        expand_dataset(src, out, ops={"flip": 0.5}, per_image=1)


def test_stale_outputs_of_a_previous_run_are_removed(src: Path, tmp_path: Path):
    out = tmp_path / "out"
    augment_ok(src, out, "--per-image", "2", "--ops", OPS)
    result = cnn_augment(src, out, "--per-image", "1", "--ops", OPS)
    assert result.exit_code == 0 and "stale" in result.output
    assert not (out / "cat" / "c0__aug1.jpg").exists()
    assert {r["output"] for r in manifest(out)} == {k for k in hashes(out) if k != MANIFEST_NAME}


def test_split_layout_augments_only_train(tmp_path: Path):
    src = tmp_path / "src"
    make_flat(src / "train")
    for name in ("cat", "dog"):
        make_image(src / "val" / name / "v.png", 99)
    out = tmp_path / "out"
    result = cnn_augment(src, out, "--per-image", "1", "--ops", OPS)
    assert result.exit_code == 0, result.output
    assert files_in(out / "val" / "cat") == ["v.png"]  # copied, never augmented
    assert "c0__aug0.jpg" in files_in(out / "train" / "cat")
    assert not list((out / "train").rglob("v*"))  # no validation image leaks into train
    rows = [r for r in manifest(out) if r["kind"] == "augmented"]
    assert rows and all(r["split"] == "train" for r in rows)

    both = tmp_path / "both"
    augment_ok(src, both, "--per-image", "1", "--ops", OPS, "--all-splits")
    assert files_in(both / "val" / "cat") == ["v.png", "v__aug0.png"]


def test_train_folder_without_val_is_augmented_whole(tmp_path: Path):
    """The scan splits a lone train/ for training, but every file in it is training data."""
    src = make_flat(tmp_path / "src" / "train").parent
    out = tmp_path / "out"
    augment_ok(src, out, "--per-image", "1", "--ops", OPS, "--no-originals")
    assert len(list((out / "train").rglob("*__aug0.*"))) == 8
    assert not (out / "val").exists()


def test_unreadable_sources_are_skipped_and_named(src: Path, tmp_path: Path):
    (src / "dog" / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    preview = tmp_path / "preview.png"
    result = cnn_augment(src, out, "--target-per-class", "6", "--ops", OPS, "--preview", preview)
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "broken.png" in result.output
    assert len(files_in(out / "dog")) == 6 and not (out / "dog" / "broken.png").exists()
    with Image.open(preview) as grid:
        assert grid.format == "PNG" and grid.width > grid.height // 2
    refused = cnn_augment(src, out, "--per-image", "1", "--ops", OPS, "--preview", src / "p.png")
    assert refused.exit_code == 2 and not (src / "p.png").exists()
