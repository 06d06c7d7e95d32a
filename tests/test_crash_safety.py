"""Crash safety: kill -9 at random moments, Ctrl-C, NaN/Inf losses, unwritable or full disks,
and resident memory bounded by --cache-memory. Training runs are real `cnn train` processes."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncli.cli import app
from cnncli.commands.common import disk_error
from tests.conftest import TINY
from tests.imagefactory import make_class_tree

EPOCHS = 4
RUN_ARGS = [*TINY, "--epochs", str(EPOCHS), "--seed", "1", "-q"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """40 small images in two classes: 4 train steps of 8 per epoch."""
    root = tmp_path_factory.mktemp("crash") / "photos"
    make_class_tree(root, {"a": 20, "b": 20}, size=16)
    return root


@pytest.fixture(scope="module")
def jit_cache(tmp_path_factory) -> dict[str, str]:
    """Environment sharing one persistent XLA compilation cache across the subprocesses.

    Compiling the same tiny network in every `cnn train` process dominates these tests;
    the cache only skips recompiling (same executables, same numbers).
    """
    folder = tmp_path_factory.mktemp("jit-cache")
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(folder),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def _cnn(*args) -> list[str]:
    return [sys.executable, "-m", "cnncli", *map(str, args)]


def _final_state(run: Path) -> dict[str, np.ndarray]:
    """Every array of the last checkpoint (params, batch stats, optimizer), by path."""
    import jax
    import orbax.checkpoint as ocp

    steps = [int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit()]
    state = ocp.StandardCheckpointer().restore(run / "checkpoints" / str(max(steps)) / "state")
    return {
        jax.tree_util.keystr(k): np.asarray(v)
        for k, v in jax.tree_util.tree_leaves_with_path(state)
    }


def _latest_complete(run: Path) -> int | None:
    from cnncli.training.checkpoint import TrainCheckpoints

    checkpoints = TrainCheckpoints(run / "checkpoints")
    try:
        return checkpoints.latest_epoch()
    finally:
        checkpoints.close()


def _metric_rows(run: Path) -> int:
    try:
        return max(0, len((run / "metrics.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def _half_written(run: Path) -> list[str]:
    """Orbax's temporary folders of checkpoints being written (renamed when complete)."""
    try:
        return [n for n in os.listdir(run / "checkpoints") if ".orbax-checkpoint-tmp" in n]
    except OSError:
        return []


def _kill_when(proc, run: Path, moment: str, rng: random.Random, timing: dict) -> str:
    """Wait for `moment`, then SIGKILL; returns what was happening when the kill landed.

    checkpoint-write: as soon as orbax's temporary folder for a random remaining epoch
    appears; after-epoch: 0-30 ms
    after a random remaining epoch's metrics row (model/, metrics.csv, then the checkpoint
    are written in that window); startup: a random time while decoding and compiling
    (timing["startup"]: how long that took in the first run killed mid-checkpoint).
    """
    deadline = time.monotonic() + 240
    while proc.poll() is None and not (run / "run.json").exists():
        time.sleep(0.001)
    done, born = _metric_rows(run), time.monotonic()
    if moment == "checkpoint-write":
        epoch = rng.randint(min(done + 1, EPOCHS), EPOCHS)
        while proc.poll() is None and time.monotonic() < deadline:
            if any(n.startswith(f"{epoch}.") for n in _half_written(run)):
                os.kill(proc.pid, signal.SIGKILL)
                timing.setdefault("startup", time.monotonic() - born)
                return "during a checkpoint write"
            time.sleep(0.0005)
        return "after the run finished"
    if moment == "after-epoch":
        target = rng.randint(min(done + 1, EPOCHS), EPOCHS)
        while proc.poll() is None and _metric_rows(run) < target and time.monotonic() < deadline:
            time.sleep(0.0005)
        time.sleep(rng.uniform(0, 0.03))
    else:
        time.sleep(rng.uniform(0, timing["startup"]))
    if proc.poll() is not None:
        return "after the run finished"
    os.kill(proc.pid, signal.SIGKILL)
    return f"{moment}, {_metric_rows(run)} epoch(s) done"


def _kill_and_check(cmd, run: Path, moment: str, rng: random.Random, timing: dict, env) -> str:
    """Start cmd, SIGKILL it at `moment`, check no half checkpoint counts; returns the moment."""
    proc = subprocess.Popen(cmd, env=env)
    what = _kill_when(proc, run, moment, rng, timing)
    proc.wait()
    if what == "during a checkpoint write":
        half = _half_written(run)
        if not half:  # orbax renamed it in the instant before the kill landed
            return "just after a checkpoint write"
        epoch = int(half[0].split(".")[0])
        assert _latest_complete(run) == (epoch - 1 or None), half
        what += f" (epoch {epoch})"
    return what


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_is_bit_identical(photos, jit_cache, tmp_path):
    """Ten kill -9s at seeded moments (some mid-checkpoint), two per run: the first kills a
    fresh run, the second its resume; the final resume ends bit-identical to a clean run.
    A kill that finds its run already ended does not count towards the ten."""
    clean = tmp_path / "clean"
    subprocess.run(_cnn("train", photos, "--out", clean, *RUN_ARGS), env=jit_cache, check=True)
    expected_state = _final_state(clean)
    rng = random.Random(6)
    firsts = ["checkpoint-write"] * 3 + ["startup", "after-epoch"]
    timing: dict[str, float] = {}
    landed: list[str] = []
    trial = 0
    while sum(w != "after the run finished" for w in landed) < 10:
        assert trial < 8, landed  # a kill may miss a run that already ended; not this often
        run = tmp_path / f"killed{trial}"
        resume = _cnn("train", "--resume", run, "-q")
        for cmd in (_cnn("train", photos, "--out", run, *RUN_ARGS), resume):
            moment = firsts.pop(0) if firsts and cmd is not resume else None
            moment = moment or rng.choice(["checkpoint-write", "after-epoch", "startup"])
            landed.append(_kill_and_check(cmd, run, moment, rng, timing, jit_cache))
        what = "; then ".join(landed[-2:])
        trial += 1
        finish = subprocess.run(resume, env=jit_cache, capture_output=True, text=True)
        assert finish.returncode == 0, (what, finish.stderr)
        assert (run / "metrics.csv").read_bytes() == (clean / "metrics.csv").read_bytes(), what
        weights = "model/weights.safetensors"
        assert (run / weights).read_bytes() == (clean / weights).read_bytes(), what
        state = _final_state(run)
        assert state.keys() == expected_state.keys()
        for name, value in expected_state.items():
            assert np.array_equal(state[name], value), (what, name)
    print("kills landed:", *landed, sep="\n  ")  # shown with pytest -s
    assert any(w.startswith("during a checkpoint write") for w in landed), landed


def _run_until_rows(cmd, run: Path, rows: int, env) -> subprocess.Popen:
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 240
    while proc.poll() is None and _metric_rows(run) < rows and time.monotonic() < deadline:
        time.sleep(0.005)
    return proc


def test_ctrl_c_checkpoints_says_how_to_resume_and_exits_130(photos, jit_cache, tmp_path):
    run = tmp_path / "run"
    args = [*TINY, "--epochs", "12", "--seed", "1"]
    proc = _run_until_rows(_cnn("train", photos, "--out", run, *args), run, 2, jit_cache)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    out, err = proc.communicate(timeout=60)
    text = (out + err).decode()
    assert proc.returncode == 130, text
    assert f"cnn train --resume {run}" in " ".join(text.split())
    assert "Traceback" not in text
    # Epoch 2's metrics row is written just before its checkpoint: 1 or 2 are complete.
    done = _latest_complete(run)
    assert done is not None and done >= 1
    resumed = subprocess.run(_cnn("train", "--resume", run, "-q"), env=jit_cache)
    assert resumed.returncode == 0 and _metric_rows(run) == 12


def test_ctrl_c_while_decoding_exits_130_without_worker_tracebacks(jit_cache, tmp_path):
    """Ctrl-C as the decode workers start: the parent cancels the queue, no worker prints."""
    data = tmp_path / "many"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (data / label).mkdir(parents=True)
        for i in range(150):
            pixels = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data / label / f"{i}.png", compress_level=1)
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _cnn("train", data, "--out", run, *TINY, "--epochs", "1"),
        env=jit_cache,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    while proc.poll() is None and not (run / "cache").exists():
        time.sleep(0.001)
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert time.monotonic() - sent < 20
    assert "Traceback" not in err.decode(), err.decode()
    assert "cnn train --resume" in " ".join(out.decode().split())


def test_nan_loss_stops_with_epoch_step_and_hint(runner, photos, tmp_path):
    run = tmp_path / "run"
    result = runner.invoke(
        app, ["train", str(photos), "--out", str(run), *TINY, "--epochs", "3", "--lr", "1e12"]
    )
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert "epoch 1, step" in message and "--lr" in message
    assert "Traceback" not in result.output
    assert not (run / "model").exists()  # nothing worth keeping was ever reached


def test_overflow_keeps_the_last_good_checkpoint_and_model(runner, photos, tmp_path):
    """One step per epoch: epoch 1 runs at lr 0 (warm-up), epoch 2's step overflows the weights."""
    from cnncli.inference.bundle import load_bundle

    run = tmp_path / "run"
    flags = ["--image-size", "16", "--filters", "8,16", "--dense", "16", "--batch-size", "64"]
    flags += ["--recipe", "fixed"]
    result = runner.invoke(
        app, ["train", str(photos), "--out", str(run), *flags, "--epochs", "3", "--lr", "1e12"]
    )
    assert result.exit_code == 1, result.output
    assert "epoch 2" in " ".join(result.output.split())
    assert _latest_complete(run) == 1
    assert _metric_rows(run) == 1
    bundle = load_bundle(run)  # refuses NaN/Inf weights, so this proves model/ is good
    assert bundle.meta["epoch"] == 1


def test_output_folder_is_checked_before_any_work(runner, photos, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["train", str(photos), "--out", str(blocker / "run")])
    assert result.exit_code == 2
    assert "not writable" in result.output and "Traceback" not in result.output


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_output_folder_is_a_clear_error(runner, photos, tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        result = runner.invoke(app, ["train", str(photos), "--out", str(parent / "run")])
    finally:
        parent.chmod(0o755)
    assert result.exit_code == 2 and "not writable" in result.output


def test_disk_full_mid_run_is_one_line(runner, photos, tmp_path, monkeypatch):
    import cnncli.training.execute

    def full(run_dir, rows):
        raise OSError(errno.ENOSPC, "No space left on device", str(run_dir / "metrics.csv"))

    # the fit loop's recorder writes metrics.csv through execute's name for write_metrics
    monkeypatch.setattr(cnncli.training.execute, "write_metrics", full)
    result = runner.invoke(
        app, ["train", str(photos), "--out", str(tmp_path / "run"), *TINY, "--epochs", "1"]
    )
    assert result.exit_code == 1
    assert "metrics.csv: cannot write (No space left on device); free some space" in " ".join(
        result.output.split()
    )
    assert "Traceback" not in result.output


def test_disk_error_reads_orbax_messages():
    orbax = ValueError(
        'RESOURCE_EXHAUSTED: Error writing "x" in OCDBT database at local file '
        '"/runs/r/checkpoints/3.orbax-checkpoint-tmp/": Failed to write 10 bytes: '
        "No space left on device [os_error_code='28']"
    )
    assert disk_error(orbax) == (
        "/runs/r/checkpoints/3.orbax-checkpoint-tmp/: cannot write (No space left on device)"
    )
    assert disk_error(OSError(errno.EROFS, "Read-only file system", "/x")) == (
        "/x: cannot write (Read-only file system)"
    )
    assert disk_error(ValueError("something else")) is None


def _peak_anon_mib(cmd, env) -> float:
    """Peak anonymous resident memory (heap, not file-backed pages) of a command, sampled."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith("RssAnon:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.01)
    assert proc.returncode == 0, proc.stderr.read().decode()
    return peak / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_cache_over_budget_keeps_resident_memory_bounded(jit_cache, tmp_path):
    """400 images decode to 79 MB at 256 px; with --cache-memory 1 they stay on disk.

    File-backed pages of the memory-mapped cache can be resident too, but the kernel can
    drop them at will; the anonymous memory (what cannot be reclaimed) is what is bounded.
    """
    data = tmp_path / "big"
    make_class_tree(data, {"a": 200, "b": 200}, size=32)
    (data / "a" / "broken.png").write_bytes(b"not a png")  # a skipped row must not copy all
    decoded_mib = 400 * 256 * 256 * 3 / 2**20
    flags = ["--image-size", "256", "--filters", "4", "--stride", "4", "--pool", "4"]
    flags += ["--dense", "8", "--batch-size", "8", "--epochs", "1", "--recipe", "fixed", "-q"]
    in_ram = _peak_anon_mib(
        _cnn("train", data, "--out", tmp_path / "ram", *flags, "--cache-memory", "4096"), jit_cache
    )
    mapped = _peak_anon_mib(
        _cnn("train", data, "--out", tmp_path / "map", *flags, "--cache-memory", "1"), jit_cache
    )
    assert mapped < in_ram - 0.6 * decoded_mib, (mapped, in_ram, decoded_mib)


def test_ctrl_c_is_never_lost_in_a_gc_callback():
    """The train command's handler only notes Ctrl-C; the next step raises (a second one at once)."""
    from cnncli.commands.train_display import StopOnCtrlC

    class Inner:
        steps = 0

        def on_step(self, *args):
            self.steps += 1

    # Start from Python's usual handler whatever this process inherited: a shell starts a
    # background job (`cmd &`) with SIGINT ignored, and Python then keeps SIG_IGN.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        inner = Inner()
        with StopOnCtrlC(inner) as guarded:
            guarded.on_step(0, 1, 0.0, 0.0)
            os.kill(os.getpid(), signal.SIGINT)
            # The handler runs here and raises nothing. Wait for it: the signal may land on
            # another thread and reach Python's handler a little later.
            deadline = time.monotonic() + 10
            while not guarded.pressed and time.monotonic() < deadline:
                time.sleep(0.01)
            with pytest.raises(KeyboardInterrupt):
                guarded.on_step(1, 1, 0.0, 0.0)
            with pytest.raises(KeyboardInterrupt):  # the second Ctrl-C: the default handler
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):
                    time.sleep(0.01)
        assert inner.steps == 1
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)
