"""TensorBoard event files under RUN/tb/ (`cnn train --tensorboard`), written with tensorboardX.

tensorboardX is an optional extra (pip install 'cnn[tensorboard]'): it writes the event
format with protobuf alone, no TensorFlow. Logged: loss and learning rate per step; train
and val loss and accuracy, the learning rate and epoch time per epoch; a histogram of
every weight array per epoch; the augmented sample grid; and, at the end, the confusion
matrix of the best model on the validation split, as an image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TB_DIR = "tb"


def tensorboard_missing() -> str | None:
    """Why --tensorboard cannot work here, or None."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        return "--tensorboard needs tensorboardX: pip install 'cnn[tensorboard]'"
    return None


def _png_array(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


class TensorBoardCallbacks:
    """Training callbacks that log to RUN/tb/ and forward every call to `inner`."""

    def __init__(self, run_dir: Path, cfg, inner):
        from tensorboardX import SummaryWriter

        self.run_dir, self.cfg, self.inner = Path(run_dir), cfg, inner
        self.writer = SummaryWriter(str(self.run_dir / TB_DIR))
        self.schedule = None
        self.steps = 1
        self.epoch = 1

    def on_epoch_start(self, epoch, epochs, steps):
        from cnncli.training.optimizer import make_schedule

        if self.schedule is None:
            self.schedule = make_schedule(self.cfg.train, steps)
        self.epoch, self.steps = epoch, steps
        self.inner.on_epoch_start(epoch, epochs, steps)

    def on_step(self, step, steps, loss, images_per_s):
        global_step = (self.epoch - 1) * self.steps + step
        self.writer.add_scalar("step/loss", loss, global_step)
        self.writer.add_scalar("step/lr", float(self.schedule(global_step - 1)), global_step)
        self.writer.add_scalar("step/images_per_s", images_per_s, global_step)
        self.inner.on_step(step, steps, loss, images_per_s)

    def on_epoch_end(self, row, seconds, improved):
        for key, value in row.as_dict().items():
            if key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", value, row.epoch)
        self.writer.add_scalar("epoch/seconds", seconds, row.epoch)
        self.inner.on_epoch_end(row, seconds, improved)

    def on_epoch_state(self, epoch, host_state):
        for name, value in host_state["params"].items():
            self.writer.add_histogram(f"weights/{name}", np.asarray(value), epoch)
        self.writer.flush()
        forward = getattr(self.inner, "on_epoch_state", None)
        if forward is not None:
            forward(epoch, host_state)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def close(self, dataset=None, best_epoch: int = 0) -> None:
        """Add the sample grid (drawn in the background while training started) and the
        best model's confusion matrix (val split), and close the files."""
        try:
            if (self.run_dir / "samples.png").is_file():
                image = _png_array(self.run_dir / "samples.png")
                self.writer.add_image("samples", image, 0, dataformats="HWC")
            if dataset is not None and (self.run_dir / "model" / "model.json").is_file():
                self._confusion(dataset, best_epoch)
        finally:
            self.writer.close()

    def _confusion(self, dataset, best_epoch: int) -> None:
        from cnncli.charts.plots import plot_confusion_matrix
        from cnncli.inference.bundle import load_bundle
        from cnncli.inference.evaluate import confusion_matrix
        from cnncli.inference.heldout import run_predictions

        bundle = load_bundle(self.run_dir / "model")
        if bundle.multi_label:
            return
        pred = run_predictions(bundle, dataset)
        if pred is None or not len(pred.paths):
            return
        cm = confusion_matrix(pred.labels, pred.probs.argmax(axis=1), len(bundle.classes))
        path = self.run_dir / TB_DIR / "confusion_matrix.png"
        plot_confusion_matrix(cm, bundle.classes, path)
        image = _png_array(path)
        path.unlink()
        self.writer.add_image("confusion_matrix", image, best_epoch, dataformats="HWC")
