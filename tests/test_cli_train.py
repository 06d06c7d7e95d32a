"""`cnn train` end to end through the real CLI on small real images."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from cnncli.cli import app
from cnncli.config import load_toml
from tests.conftest import TINY
from tests.imagefactory import make_class_tree


def _train(runner, *args):
    return runner.invoke(app, ["train", *map(str, args)])


def test_train_writes_a_complete_run_folder(runner, tree3, tmp_path):
    out = tmp_path / "run"
    result = _train(runner, tree3, "--out", out, "--epochs", "4", "--lr", "0.003", *TINY, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("config.toml", "split.csv", "metrics.csv", "run.json", "summary.json"):
        assert (out / name).is_file(), name
    assert (out / "model" / "weights.safetensors").is_file()
    assert (out / "model" / "model.json").is_file()
    assert any((out / "checkpoints").iterdir())
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    # Colour classes are easy: the network must learn well above chance (1/3).
    assert summary["best_val_acc"] >= 0.8
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    # The saved config replays: same values, and flags landed in it.
    cfg = load_toml(out / "config.toml")
    assert cfg.data.image_size == 16 and [b.filters for b in cfg.model.conv] == [8, 16]
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["classes"] == ["blue", "green", "red"]


def test_stratified_split_manifest_has_every_class_in_val(runner, tree3, tmp_path):
    out = tmp_path / "run"
    assert (
        _train(
            runner, tree3, "--out", out, "--epochs", "1", "--val-fraction", "0.25", *TINY
        ).exit_code
        == 0
    )
    lines = [
        row for row in csv.reader((out / "split.csv").open()) if row and not row[0].startswith("#")
    ][1:]
    val = [r for r in lines if r[0] == "val"]
    assert sorted({r[2] for r in val}) == ["blue", "green", "red"]
    assert len(val) == 9 and len(lines) == 36


def test_same_seed_gives_identical_metrics(runner, tree3, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert (
            _train(runner, tree3, "--out", out, "--epochs", "2", "--seed", "3", *TINY).exit_code
            == 0
        )
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    assert (a / "model" / "weights.safetensors").read_bytes() == (
        b / "model" / "weights.safetensors"
    ).read_bytes()


def test_config_file_and_flags_override(runner, tree3, tmp_path):
    first = tmp_path / "first"
    assert _train(runner, tree3, "--out", first, "--epochs", "1", *TINY).exit_code == 0
    second = tmp_path / "second"
    result = _train(
        runner, tree3, "--config", first / "config.toml", "--out", second, "--lr", "0.002"
    )
    assert result.exit_code == 0, result.output
    cfg = load_toml(second / "config.toml")
    assert cfg.train.lr == 0.002 and cfg.data.image_size == 16 and cfg.train.epochs == 1


def test_finished_run_says_so_on_resume(runner, tree3, tmp_path):
    out = tmp_path / "run"
    assert _train(runner, tree3, "--out", out, "--epochs", "1", *TINY).exit_code == 0
    before = (out / "metrics.csv").read_bytes()
    result = runner.invoke(app, ["train", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    assert "already finished" in result.output
    assert (out / "metrics.csv").read_bytes() == before


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    """kill -9 mid-run, resume, and end with the same metrics and weights as a clean run."""
    data = tmp_path / "photos"
    make_class_tree(data, {"a": 30, "b": 30}, size=16)
    args = [*TINY, "--epochs", "6", "--seed", "1"]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    cmd = [sys.executable, "-m", "cnncli", "train", str(data), *args]
    subprocess.run([*cmd, "--out", str(clean), "-q"], check=True, timeout=300)
    proc = subprocess.Popen([*cmd, "--out", str(killed), "-q"])
    deadline = time.monotonic() + 240
    metrics = killed / "metrics.csv"
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.01)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(
        [sys.executable, "-m", "cnncli", "train", "--resume", str(killed), "-q"],
        check=True,
        timeout=300,
    )
    assert (killed / "metrics.csv").read_bytes() == (clean / "metrics.csv").read_bytes()
    assert (killed / "model" / "weights.safetensors").read_bytes() == (
        clean / "model" / "weights.safetensors"
    ).read_bytes()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "file.txt").write_text("x") and p / "file.txt", "not a folder"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no images"),
    ],
)
def test_bad_data_dir_is_one_line_exit_2(runner, tmp_path, make, message):
    path = make(tmp_path)
    result = _train(runner, path, "--out", tmp_path / "run")
    assert result.exit_code == 2
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and message in line and str(path) in line
    assert "Traceback" not in result.output


def test_one_class_and_too_few_images_are_clear_errors(runner, tmp_path):
    one = tmp_path / "one"
    make_class_tree(one, {"cats": 5})
    result = _train(runner, one, "--out", tmp_path / "r1")
    assert result.exit_code == 2 and "need at least 2" in result.output and "cats" in result.output
    few = tmp_path / "few"
    make_class_tree(few, {"cats": 5, "dogs": 1})
    result = _train(runner, few, "--out", tmp_path / "r2")
    assert result.exit_code == 2 and "dogs" in result.output and "1 image" in result.output


def test_image_too_small_for_network_names_layer(runner, tree3, tmp_path):
    result = _train(
        runner, tree3, "--out", tmp_path / "r", "--image-size", "8", "--filters", "8,8,8,8"
    )
    assert result.exit_code == 2
    assert "layer pool4" in result.output and "--image-size" in result.output
    assert not (tmp_path / "r").exists()  # failed before creating anything


def test_bad_flag_values_exit_2(runner, tree3, tmp_path):
    for flags, text in (
        (["--channels", "2"], "channels"),
        (["--optimizer", "rmsprop"], "optimizer"),
        (["--filters", "a,b"], "--filters"),
        (["--padding", "wide"], "padding"),
        (["--augment", "spin=3"], "spin"),
    ):
        result = _train(runner, tree3, "--out", tmp_path / "x", *flags)
        assert result.exit_code == 2, (flags, result.output)
        assert text in result.output


def test_undecodable_file_is_skipped_and_named(runner, tree3, tmp_path):
    (tree3 / "red" / "broken.jpg").write_bytes(b"not a jpeg at all")
    out = tmp_path / "run"
    result = _train(runner, tree3, "--out", out, "--epochs", "1", *TINY, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert [s["path"] for s in summary["skipped"]] == ["red/broken.jpg"]
    assert "broken.jpg" in result.output


def test_split_layout_uses_val_folder(runner, tmp_path):
    root = tmp_path / "ds"
    make_class_tree(root / "train", {"x": 8, "y": 8}, size=16)
    make_class_tree(root / "val", {"x": 3, "y": 3}, size=16, seed=1)
    out = tmp_path / "run"
    result = _train(runner, root, "--out", out, "--epochs", "1", *TINY)
    assert result.exit_code == 0, result.output
    assert "# layout: split" in (out / "split.csv").read_text()
    text = (out / "split.csv").read_text()
    assert "val,0,x,val/x/" in text and "train,1,y,train/y/" in text


def test_grayscale_channels_one(runner, tree3, tmp_path):
    out = tmp_path / "run"
    assert (
        _train(runner, tree3, "--out", out, "--epochs", "1", "--channels", "1", *TINY).exit_code
        == 0
    )
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["preprocess"]["channels"] == 1


def test_non_image_files_are_ignored(runner, tree3, tmp_path):
    (tree3 / "red" / "notes.txt").write_text("hello")
    (tree3 / "red" / ".hidden.png").write_bytes(b"")
    Image.new("RGB", (16, 16)).save(tree3 / "red" / "UPPER.PNG")
    out = tmp_path / "run"
    assert _train(runner, tree3, "--out", out, "--epochs", "1", *TINY).exit_code == 0
    text = (out / "split.csv").read_text()
    assert "UPPER.PNG" in text and "notes.txt" not in text.split("path\n", 1)[1]
