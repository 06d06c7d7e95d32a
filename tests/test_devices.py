"""One code path for 1..N devices: a 2-device data-parallel run matches a 1-device run."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from tests.conftest import TINY
from tests.imagefactory import make_class_tree


def _metrics(path):
    return list(csv.DictReader(path.open()))


def test_two_cpu_devices_match_one(tmp_path):
    data = tmp_path / "photos"
    make_class_tree(data, {"a": 16, "b": 16, "c": 16}, size=16)
    runs = {}
    for devices in (1, 2):
        out = tmp_path / f"d{devices}"
        cmd = [
            sys.executable,
            "-m",
            "cnncli",
            "train",
            str(data),
            "--out",
            str(out),
            *TINY,
            "--epochs",
            "3",
            "--devices",
            str(devices),
            "-q",
        ]
        subprocess.run(cmd, check=True, timeout=300)
        runs[devices] = _metrics(out / "metrics.csv")
    assert len(runs[1]) == len(runs[2]) == 3
    for one, two in zip(runs[1], runs[2], strict=True):
        for key in ("train_loss", "val_loss"):
            assert float(two[key]) == pytest.approx(float(one[key]), abs=1e-5), (key, one, two)
        assert one["val_acc"] == two["val_acc"]


def test_batch_must_split_evenly(tmp_path):
    data = tmp_path / "photos"
    make_class_tree(data, {"a": 6, "b": 6}, size=16)
    cmd = [
        sys.executable,
        "-m",
        "cnncli",
        "train",
        str(data),
        "--out",
        str(tmp_path / "r"),
        *TINY,
        "--batch-size",
        "7",
        "--devices",
        "2",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "multiple of train.devices" in result.stderr
