"""Data on the device: the device-resident, chunked and host paths train alike, resume, bf16."""

from __future__ import annotations

import numpy as np
import pytest

from cnncli.augment.ops import make_augment, resolve_ops
from cnncli.config import ConvBlock, RunConfig
from cnncli.data.feed import DeviceFeed
from cnncli.data.loader import SplitArrays, epoch_batches
from cnncli.model.flax_module import init_weights
from cnncli.training.epochs import Callbacks, epoch_row
from cnncli.training.optimizer import make_optimizer
from cnncli.training.train import fit

SIZE, CLASSES = 16, 3
IMAGE_BYTES = SIZE * SIZE * 3


class Saved:
    """fit's checkpoints, kept in memory: epoch -> (host state, meta)."""

    def __init__(self):
        self.epochs = {}

    def save(self, epoch, state, meta, score):
        self.epochs[epoch] = (state, meta)


class StopAt(Callbacks):
    """Ctrl-C at the start of an epoch (as the CLI's handler raises it)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, epoch, epochs, steps):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _data(n=45, seed=0):
    """Images whose mean colour tells the class, so the loss falls."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n).astype(np.int32)
    images = rng.integers(0, 120, (n, SIZE, SIZE, 3)).astype(np.uint8)
    images[np.arange(n), :, :, labels] += 120
    return SplitArrays(images, labels), SplitArrays(images[:9], labels[:9])


def _config(placement="host", per_call=0, chunk_batches=0, precision="fp32", epochs=2):
    cfg = RunConfig()
    cfg.data.image_size = SIZE
    cfg.model.conv = [ConvBlock(8, batch_norm=True), ConvBlock(16)]
    cfg.model.dense = [16]
    cfg.augment.preset = "light"  # keyed flips and shifts
    t = cfg.train
    t.batch_size, t.epochs, t.data_placement, t.precision = 8, epochs, placement, precision
    t.steps_per_dispatch = per_call
    if chunk_batches:
        t.chunk_mb = chunk_batches * t.batch_size * IMAGE_BYTES / 2**20
    return cfg


def _fit(cfg, train, val, state=None, start=0, history=None, callbacks=None, saved=None):
    if state is None:
        params, stats = init_weights(
            cfg.model, image_size=SIZE, channels=3, num_classes=CLASSES, seed=0
        )
        state = {"params": params, "stats": stats, "opt": make_optimizer(cfg.train, 1).init(params)}
    aug = make_augment(resolve_ops(cfg.augment.preset, cfg.augment.ops))
    return fit(
        cfg,
        train,
        val,
        state,
        saved or Saved(),
        start_epoch=start,
        history=history,
        augment_fn=aug,
        callbacks=callbacks,
        num_classes=CLASSES,
    )


@pytest.fixture(scope="module")
def runs():
    """Two epochs on the host path (today's), the device path and the chunked scan path."""
    train, val = _data()
    return {
        "host": _fit(_config("host"), train, val),
        "device": _fit(_config("device", per_call=1), train, val),
        "chunked": _fit(_config("chunked", per_call=2, chunk_batches=2), train, val),
    }


def test_every_placement_gives_the_losses_and_weights_of_the_host_path(runs):
    """device (a step a call) and chunked (chunks of 2 batches, 2 steps a call: lax.scan)
    train as the host path: the per-step calls bit for bit, the scan to float rounding."""
    host = runs["host"]
    losses = [r.train_loss for r in host.history]
    assert losses[1] < losses[0]
    for placement, exact in [("device", True), ("chunked", False)]:
        got = runs[placement]
        other = [r.train_loss for r in got.history]
        weights = max(float(np.abs(got.params[k] - host.params[k]).max()) for k in host.params)
        if exact:
            assert other == losses and weights == 0.0, placement
        else:
            assert other == pytest.approx(losses, rel=1e-6, abs=1e-6), placement
            assert weights < 1e-5, (placement, weights)
        assert [r.val_acc for r in got.history] == pytest.approx([r.val_acc for r in host.history])


@pytest.mark.parametrize("placement", ["device", "chunked"])
def test_the_step_sees_the_host_paths_batches_in_the_same_order(placement):
    """Every row a call gathers on the device is the image epoch_batches puts in that slot."""
    train, _ = _data(n=45)
    batch = 8
    feed = DeviceFeed(train, placement, batch, 2 * batch * IMAGE_BYTES / 2**20)
    expected = list(epoch_batches(train, 0, 3, batch))
    seen = []
    for d in feed.epoch(epoch_batches(train, 0, 3, batch), 2):
        rows, masks = np.asarray(d.rows), np.asarray(d.mask)
        images, labels = np.asarray(d.images), np.asarray(d.labels)
        for i in range(d.first, d.first + d.count):
            seen.append((images[rows[i]], labels[rows[i]], masks[i], d.step + i - d.first))
    assert len(seen) == len(expected) == 6
    for step, ((idx, mask), (images, labels, got_mask, key_step)) in enumerate(
        zip(expected, seen, strict=True)
    ):
        assert key_step == step
        assert np.array_equal(mask, got_mask)
        real = mask > 0
        assert np.array_equal(images[real], train.images[idx[real]])
        assert np.array_equal(labels[real], train.labels[idx[real]])


def test_interrupted_and_resumed_on_the_chunked_scan_path_ends_with_the_same_weights(runs):
    train, val = _data()
    cfg = _config("chunked", per_call=2, chunk_batches=2, epochs=2)
    clean = runs["chunked"]
    saved = Saved()
    with pytest.raises(KeyboardInterrupt):
        _fit(cfg, train, val, callbacks=StopAt(2), saved=saved)
    state, meta = saved.epochs[1]
    history = [epoch_row(r) for r in meta["history"]]
    resumed = _fit(cfg, train, val, state=state, start=1, history=history)
    assert [r.as_dict() for r in resumed.history] == [r.as_dict() for r in clean.history]
    for k in clean.params:
        assert np.array_equal(resumed.params[k], clean.params[k]), k


def test_bf16_trains_end_to_end_within_tolerance_of_fp32(runs):
    """bfloat16 activations: the loss of each epoch within 3 % of fp32's, weights float32."""
    train, val = _data()
    fp32 = runs["device"]
    bf16 = _fit(_config("device", precision="bf16"), train, val)
    a = np.array([r.train_loss for r in fp32.history])
    b = np.array([r.train_loss for r in bf16.history])
    assert np.all(np.abs(b - a) <= 0.03 * a), (a, b)
    assert not np.array_equal(a, b)  # it did run in another precision
    assert b[-1] < b[0]
    assert all(v.dtype == np.float32 for v in bf16.params.values())
    assert all(v.dtype == np.float32 for v in bf16.stats.values())


def test_large_batch_preset_scales_the_recipe():
    from cnncli.config import TrainConfig, large_batch

    adam = large_batch(TrainConfig(batch_size=64, lr=0.002, warmup_epochs=1.0), 1024)
    assert (adam.batch_size, adam.warmup_epochs) == (1024, 2.0)
    assert adam.lr == pytest.approx(0.002 * 4)  # sqrt(1024 / 64)
    sgd = large_batch(TrainConfig(optimizer="sgd", batch_size=128, lr=0.1, warmup_epochs=5), 512)
    assert sgd.lr == pytest.approx(0.4) and sgd.warmup_epochs == 5


def test_cli_large_batch_and_precision_land_in_the_run_config(tmp_path):
    """--large-batch scales the flags' recipe; the resolved values are what config.toml keeps."""
    from typer.testing import CliRunner

    from cnncli.cli import app
    from cnncli.config import load_toml
    from tests.imagefactory import make_class_tree

    data = tmp_path / "photos"
    make_class_tree(data, {"a": 10, "b": 10}, size=16)
    out = tmp_path / "run"
    args = ["train", str(data), "--out", str(out), "--recipe", "fixed", "--image-size", "16"]
    args += ["--filters", "4", "--dense", "8", "--epochs", "1", "--batch-size", "4", "--lr", "0.01"]
    args += ["--large-batch", "16", "--precision", "bf16", "--data-placement", "chunked"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "precision bf16" in result.output and "chunks of" in result.output
    t = load_toml(out / "config.toml").train
    assert (t.batch_size, t.lr, t.precision, t.data_placement) == (16, 0.02, "bf16", "chunked")
