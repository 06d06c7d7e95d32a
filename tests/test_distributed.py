"""Multi-host training: two local CPU processes (gloo) train together like one process."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnncli.config import ConfigError
from cnncli.data.loader import DataShards, SplitArrays, epoch_batches
from cnncli.training.distributed import ClusterSpec, resolve_cluster
from tests.conftest import TINY
from tests.imagefactory import make_class_tree


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cnn(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnncli", "train", *args]


def _weights(run: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(run / "model" / "weights.safetensors"))


def _metrics(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "metrics.csv").open()))


# ---------------------------------------------------------------- flags and environment


def test_cluster_from_flags_and_launcher_environment():
    assert resolve_cluster(None, None, None, environ={}) is None
    spec = resolve_cluster("10.0.0.1:1234", 4, 3, environ={})
    assert spec == ClusterSpec("10.0.0.1:1234", 4, 3)
    assert resolve_cluster("h:1", 1, 0, environ={}) is None  # one process: nothing to join
    assert resolve_cluster("auto", None, None, environ={}) == ClusterSpec()
    # srun with several tasks, mpirun with several ranks: join on our own.
    assert resolve_cluster(None, None, None, {"SLURM_STEP_ID": "0", "SLURM_NTASKS": "8"})
    assert resolve_cluster(None, None, None, {"OMPI_COMM_WORLD_SIZE": "2"})
    # A one-task SLURM allocation (or a batch script outside srun) trains alone.
    assert resolve_cluster(None, None, None, {"SLURM_NTASKS": "8"}) is None
    assert resolve_cluster(None, None, None, {"SLURM_STEP_ID": "0", "SLURM_NTASKS": "1"}) is None
    for bad in (
        ("nohost", 2, 0),
        ("h:notaport", 2, 0),
        ("h:1234", None, 0),
        ("h:1234", 2, 2),
        ("h:1234", 0, 0),
        (None, 2, 0),
    ):
        with pytest.raises(ConfigError):
            resolve_cluster(*bad, environ={})


def test_bad_cluster_flags_fail_fast_with_one_line(tmp_path):
    data = tmp_path / "photos"
    make_class_tree(data, {"a": 4, "b": 4}, size=16)
    for flags, needle in (
        (["--coordinator", "127.0.0.1"], "HOST:PORT"),
        (["--coordinator", "127.0.0.1:5000", "--num-processes", "2"], "--process-id"),
        (["--num-processes", "2", "--process-id", "0"], "--coordinator"),
    ):
        proc = subprocess.run(
            _cnn(str(data), "--out", str(tmp_path / "r"), *flags),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- sharded data order


def test_shards_split_every_global_batch_and_cover_each_image_once():
    labels = np.repeat(np.arange(3), 7)  # 21 images, manifest rows 0..20
    split = SplitArrays(np.zeros((21, 1, 1, 1), np.uint8), labels)
    whole = list(epoch_batches(split, 5, 1, 8, DataShards(2, (0, 1))))
    parts = [list(epoch_batches(split, 5, 1, 8, DataShards(2, (p,)))) for p in (0, 1)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 3  # ceil(ceil(21 / 2) / 4)
    for (idx, mask), (i0, m0), (i1, m1) in zip(whole, *parts, strict=True):
        assert np.array_equal(idx, np.concatenate([i0, i1]))
        assert np.array_equal(mask, np.concatenate([m0, m1]))
        assert set(i0[m0 > 0] % 2) <= {0} and set(i1[m1 > 0] % 2) <= {1}
    seen = np.concatenate([i[m > 0] for i, m in whole])
    assert sorted(seen.tolist()) == list(range(21))
    # A process that holds only its shard (rows 1, 3, 5, ...) draws the same images.
    odd = np.arange(1, 21, 2)
    local = SplitArrays(np.zeros((10, 1, 1, 1), np.uint8), labels[odd], odd, 21)
    for (i1, m1), (il, ml) in zip(
        parts[1], epoch_batches(local, 5, 1, 8, DataShards(2, (1,))), strict=True
    ):
        assert np.array_equal(i1[m1 > 0], odd[il[ml > 0]])
    with pytest.raises(ConfigError):
        DataShards.for_process(3, 0, 2)


# ---------------------------------------------------------------- two processes


# No batch norm here: a conv bias before batch norm gets a zero gradient up to rounding, and
# Adam turns such noise into full-size steps, so runs that sum in another order can drift
# apart in those parameters while training is the same (cnn now leaves those biases out).
FLAGS = [*TINY, "--epochs", "3", "--seed", "3", "--augment", "flip"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(data, run) of one process training with --shards 2: what two processes must match."""
    base = tmp_path_factory.mktemp("distributed")
    data = base / "photos"
    make_class_tree(data, {"a": 14, "b": 14, "c": 14}, size=16)
    one = base / "one"
    subprocess.run(
        _cnn(str(data), "--out", str(one), *FLAGS, "--shards", "2", "-q"), check=True, timeout=300
    )
    return data, one


def _two_processes(*args: str) -> list[dict]:
    """Run `cnn train ARGS` as processes 0 and 1 of a local cluster; their JSON summaries."""
    port = _free_port()
    procs = [
        subprocess.Popen(
            _cnn(
                *args,
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(rank),
                "--json",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    # stdout is only the JSON summary (gloo's connection notice goes to stderr).
    return [json.loads(out) for out, _ in outputs]


def _assert_same_training(multi: Path, one: Path) -> None:
    for a, b in zip(_metrics(multi), _metrics(one), strict=True):
        for key in ("train_loss", "val_loss"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-4), (key, a, b)
        assert a["val_acc"] == b["val_acc"]
    w_multi, w_one = _weights(multi), _weights(one)
    assert w_multi.keys() == w_one.keys()
    for name in w_one:
        np.testing.assert_allclose(w_multi[name], w_one[name], atol=1e-4, err_msg=name)


def test_two_processes_train_together_like_one_process_with_two_shards(reference, tmp_path):
    data, one = reference
    multi = tmp_path / "multi"
    summaries = _two_processes(str(data), "--out", str(multi), *FLAGS)

    # Each process decoded only its half of the split.
    decoded = [s["process"]["train_images"] for s in summaries]
    total = sum(1 for row in csv.reader((multi / "split.csv").open()) if row and row[0] == "train")
    assert sum(decoded) == total and abs(decoded[0] - decoded[1]) <= 1
    assert [s["process"]["index"] for s in summaries] == [0, 1]
    assert summaries[0]["best_epoch"] == summaries[1]["best_epoch"]
    # Process 0 wrote the run folder, recording the shard count so a resume keeps the order.
    assert "shards = 2" in (multi / "config.toml").read_text()
    assert (multi / "summary.json").is_file() and (multi / "curves.png").is_file()
    # Same global batches -> the same training, up to float summation order.
    _assert_same_training(multi, one)


def test_two_processes_resume_from_process_0s_checkpoint(reference, tmp_path):
    """Stopped after each epoch (--time-limit) and resumed: process 0 restores the state
    and sends it to process 1; the end is the uninterrupted run's."""
    data, one = reference
    multi = tmp_path / "multi"
    first = _two_processes(str(data), "--out", str(multi), *FLAGS, "--time-limit", "0.0001")
    assert first[0]["epochs"] == first[1]["epochs"] == 1 and first[0]["stopped_early"]
    for epochs_done in (2, 3):
        summaries = _two_processes("--resume", str(multi))
        assert [s["epochs"] for s in summaries] == [epochs_done, epochs_done]
    _assert_same_training(multi, one)
