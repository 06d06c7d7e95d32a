"""`cnn train --tensorboard`: RUN/tb/ holds per-step and per-epoch scalars, the learning
rate, weight histograms per epoch, and the sample grid and confusion matrix as images."""

from __future__ import annotations

import csv
import io
import struct
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

from cnncli.cli import app
from tests.conftest import TINY

pytest.importorskip(
    "tensorboardX", reason="tensorboardX not installed (pip install 'cnn[tensorboard]')"
)


def read_events(folder: Path) -> dict[str, list]:
    """tag -> [(step, value)] from every event file (TFRecord framing, Event protos)."""
    from tensorboardX.proto import event_pb2

    found = defaultdict(list)
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                payload = {
                    "simple_value": value.simple_value,
                    "histo": value.histo,
                    "image": value.image,
                }.get(kind)
                found[value.tag].append((event.step, payload))
    return found


def test_tensorboard_logs_scalars_histograms_and_images(tree3, runner, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(tree3), "--out", str(run), *TINY, "--epochs", "2", "--tensorboard"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "tensorboard = true" in (run / "config.toml").read_text()
    events = read_events(run / "tb")
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    steps = 4  # 28 training images (36 less the 20 % val split) in batches of 8
    assert [s for s, _ in events["step/loss"]] == list(range(1, 2 * steps + 1))
    lrs = [v for _, v in events["step/lr"]]
    assert 0 == lrs[0] < lrs[1] < lrs[steps - 1]  # the step's lr: warm-up starts at 0
    # the epoch's lr (metrics.csv) is its last step's
    assert [lrs[steps - 1], lrs[-1]] == [pytest.approx(float(r["lr"]), rel=1e-6) for r in rows]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        logged = [(s, v) for s, v in events[f"epoch/{key}"]]
        assert logged == [(int(r["epoch"]), pytest.approx(float(r[key]), rel=1e-6)) for r in rows]
    kernel = events["weights/conv1/kernel"]
    assert [s for s, _ in kernel] == [1, 2] and kernel[0][1].num == 3 * 3 * 3 * 8
    for tag in ("samples", "confusion_matrix"):
        ((_, image),) = events[tag]
        png = Image.open(io.BytesIO(image.encoded_image_string))
        assert png.size == (image.width, image.height) and min(png.size) > 100


def test_tensorboard_without_tensorboardx_is_one_line_and_no_run(
    tree3, runner, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if not installed
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(tree3), "--out", str(run), *TINY, "--tensorboard"])
    assert result.exit_code == 2
    assert "pip install 'cnn[tensorboard]'" in result.output
    assert not run.exists()
