"""`cnn runs`: a finished, a killed (kill -9) and a damaged run are all listed with the
right status and notes, exit 0; --sort, --json and --diff."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnncli.cli import app
from tests.conftest import TINY
from tests.imagefactory import make_class_tree


def _runs_json(runner, base: Path, *extra) -> list[dict]:
    result = runner.invoke(app, ["runs", str(base), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _wait_for(predicate, seconds: float, what: str, proc) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """runs/done (finished), runs/killed (kill -9 mid-training), runs/damaged (finished,
    then metrics.csv cut mid-line)."""
    from typer.testing import CliRunner

    base = tmp_path_factory.mktemp("runs")
    make_class_tree(base / "photos", {"a": 12, "b": 12}, size=16)
    runs = base / "runs"
    args = [str(base / "photos"), *TINY, "--seed", "1", "-q"]
    result = CliRunner().invoke(app, ["train", *args, "--epochs", "2", "--out", str(runs / "done")])
    assert result.exit_code == 0, result.output

    killed = runs / "killed"
    cmd = [sys.executable, "-m", "cnncli", "train", *args, "--epochs", "400", "--out", str(killed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (killed / "metrics.csv").is_file(), 120, "a finished epoch", proc)
        # while it trains, it is listed as running
        statuses = {r["name"]: r["status"] for r in _runs_json(CliRunner(), runs)}
        assert statuses["killed"] == "running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    shutil.copytree(runs / "done", runs / "damaged")
    metrics = runs / "damaged" / "metrics.csv"
    text = metrics.read_text()
    metrics.write_text(text[: len(text.splitlines()[0]) + 12])  # header and part of a row
    return runs


def test_finished_killed_and_damaged_runs_are_listed(runs_dir, runner):
    rows = {r["name"]: r for r in _runs_json(runner, runs_dir)}
    assert sorted(rows) == ["damaged", "done", "killed"]
    done, killed, damaged = rows["done"], rows["killed"], rows["damaged"]
    assert done["status"] == "finished" and done["notes"] == []
    assert (done["epochs_done"], done["epochs"]) == (2, 2)
    history = (runs_dir / "done" / "metrics.csv").read_text().splitlines()[1:]
    best = max(float(line.split(",")[4]) for line in history)
    assert done["best_val_acc"] == pytest.approx(best)
    assert done["model"] == "conv 8-16" and done["image_size"] == 16
    assert done["data"].endswith("photos") and done["wall_s"] > 0
    assert killed["status"] == "interrupted" and killed["epochs"] == 400
    assert 1 <= killed["epochs_done"] < 400 and killed["wall_s"] > 0
    assert damaged["status"] == "finished"
    assert damaged["notes"] == ["metrics.csv damaged (0 readable rows)"]
    assert damaged["epochs_done"] == 2  # from summary.json
    assert damaged["best_val_acc"] == pytest.approx(done["best_val_acc"])
    # the table too: every run, exit 0
    result = runner.invoke(app, ["runs", str(runs_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for word in ("done", "killed", "damaged", "finished", "interrupted", "metrics.csv damaged"):
        assert word in result.output


def test_sort_and_bad_sort(runs_dir, runner):
    names = [r["name"] for r in _runs_json(runner, runs_dir, "--sort", "name")]
    assert names == ["damaged", "done", "killed"]
    epochs = [r["epochs_done"] for r in _runs_json(runner, runs_dir, "--sort", "epochs")]
    assert epochs == sorted(epochs, reverse=True)
    result = runner.invoke(app, ["runs", str(runs_dir), "--sort", "colour"])
    assert result.exit_code == 2 and "--sort must be one of" in result.output


def test_diff_shows_changed_config_and_final_metrics(runs_dir, runner):
    result = runner.invoke(
        app, ["runs", "--diff", str(runs_dir / "done"), str(runs_dir / "killed"), "--json"]
    )
    assert result.exit_code == 0, result.output
    diff = json.loads(result.stdout)
    assert diff["config"] == [["train.epochs", "2", "400"]]
    done, killed = diff["final"]
    assert done["epoch"] == 2 and done["status"] == "finished"
    assert killed["status"] == "interrupted" and killed["epoch"] >= 1
    result = runner.invoke(
        app,
        ["runs", "--diff", str(runs_dir / "done"), str(runs_dir / "killed")],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0 and "train.epochs" in result.output
    result = runner.invoke(app, ["runs", "--diff", str(runs_dir / "done"), str(runs_dir)])
    assert result.exit_code == 2 and "not a run folder" in result.output
