"""`cnn predict clip.mp4`: frames sampled at --fps, one row per frame with its time and
index; broken videos and a missing PyAV are one-line errors."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncli.cli import app
from tests.conftest import TINY
from tests.imagefactory import _CLASS_COLOURS, make_class_tree

av = pytest.importorskip("av", reason="PyAV not installed (pip install '.[video]')")

# make_class_tree gives class i the colour _CLASS_COLOURS[i]: name them after it.
CLASSES = ("red", "green", "blue")
VIDEO_FPS = 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder: a tiny model telling the three colours apart."""
    from typer.testing import CliRunner

    base = tmp_path_factory.mktemp("video")
    data = base / "photos"
    make_class_tree(data, dict.fromkeys(CLASSES, 12), size=16)
    run = base / "run"
    args = ["train", str(data), "--out", str(run), *TINY, "--epochs", "6", "--lr", "0.01", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return run


def write_clip(path: Path, seconds: int = 3) -> None:
    """A real MPEG-4 video at 10 fps (container from the suffix): second s is one solid
    colour, the colour of CLASSES[s]."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=VIDEO_FPS)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(seconds * VIDEO_FPS):
            pixels = np.empty((32, 32, 3), np.uint8)
            pixels[:] = _CLASS_COLOURS[i // VIDEO_FPS]
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    write_clip(path)
    return path


def _predict(runner, run, inputs, *extra):
    args = ["predict", *map(str, inputs), "--model", str(run), "--json", *extra]
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result, rows


@pytest.mark.parametrize(
    "fps, frames",
    [(1, [0, 10, 20]), (2, [0, 5, 10, 15, 20, 25])],
)
def test_one_row_per_sampled_frame_with_time_and_label(runner, trained, clip, fps, frames):
    result, rows = _predict(runner, trained, [clip], "--fps", str(fps))
    assert result.exit_code == 0, result.output
    assert [r["frame"] for r in rows] == frames
    assert [r["time"] for r in rows] == pytest.approx([i / VIDEO_FPS for i in frames], abs=1e-3)
    assert [r["label"] for r in rows] == [CLASSES[i // VIDEO_FPS] for i in frames]
    assert {r["path"] for r in rows} == {str(clip)}


def test_csv_and_table_show_frame_and_time(runner, trained, clip, tmp_path):
    image = tmp_path / "still.png"
    Image.new("RGB", (16, 16), _CLASS_COLOURS[1]).save(image)
    out = tmp_path / "p.csv"
    args = ["predict", str(clip), str(image), "-m", str(trained), "--csv", str(out)]
    result = runner.invoke(app, args, env={"COLUMNS": "300"})  # paths not folded
    assert result.exit_code == 0, result.output
    assert "@ 1.00s (frame 10)" in result.output
    with out.open() as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0])[:5] == ["path", "frame", "time", "label", "confidence"]
    assert [(r["frame"], r["label"]) for r in table] == [
        ("0", "red"),
        ("10", "green"),
        ("20", "blue"),
        ("", "green"),  # the still image: no frame, no time
    ]
    assert float(table[1]["time"]) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    "suffix, keep, reason",
    [
        (".mp4", 0.5, "not a readable video"),  # the index (moov) at the end is cut off
        (".mkv", 0.6, "truncated video: frames stop at"),  # FFmpeg just stops early
    ],
)
def test_truncated_video_is_one_line_and_the_rest_is_predicted(
    runner, trained, clip, tmp_path, suffix, keep, reason
):
    whole = tmp_path / f"whole{suffix}"
    write_clip(whole)
    broken = tmp_path / f"broken{suffix}"
    broken.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * keep)])
    image = tmp_path / "still.png"
    Image.new("RGB", (16, 16), _CLASS_COLOURS[2]).save(image)
    result, rows = _predict(runner, trained, [broken, clip, image])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and str(broken) in errors[0] and reason in errors[0]
    assert rows[0] == {"path": str(broken), "error": rows[0]["error"]}
    assert [r["label"] for r in rows[1:]] == ["red", "green", "blue", "blue"]


def test_without_pyav_the_error_names_the_file_and_the_extra(
    runner, trained, clip, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "av", None)
    image = tmp_path / "still.png"
    Image.new("RGB", (16, 16), _CLASS_COLOURS[0]).save(image)
    result, rows = _predict(runner, trained, [clip, image])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and str(clip) in errors[0]
    assert "pip install 'cnn[video]'" in errors[0] and "Traceback" not in result.output
    assert rows[1]["label"] == "red"


def test_the_python_api_gives_frame_and_time_too(runner, trained, clip):
    """api.load(RUN).predict(clip): the rows `cnn predict --json` prints, frame and time kept."""
    from cnncli import api

    _, rows = _predict(runner, trained, [clip])
    got = api.load(trained).predict(clip)
    assert [(p.frame, p.time, p.label) for p in got] == [
        (r["frame"], r["time"], r["label"]) for r in rows
    ]
