"""Training-state checkpoints with orbax: the last epoch and the best by validation accuracy.

Orbax writes each step to a temporary folder and renames it when complete, so a run
killed mid-write never leaves a half checkpoint that `latest_step` would pick up.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint._src.checkpoint_managers import preservation_policy as pp


def _quiet_orbax() -> None:
    # Orbax logs every save at INFO through absl; the CLI has its own progress output.
    logging.getLogger("absl").setLevel(logging.WARNING)


@contextmanager
def _failures_raised_once():
    """While saving, orbax's worker threads stay silent: a failed write (a full disk, say)
    reaches the caller once, as the exception save() raises, not as screens of tracebacks."""
    loggers = [logging.getLogger(name) for name in ("absl", "asyncio", "concurrent.futures")]
    levels, hook = [logger.level for logger in loggers], threading.excepthook
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    threading.excepthook = lambda args: None
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        threading.excepthook = hook


class TrainCheckpoints:
    """Keeps the latest and the best epoch's training state under `directory`."""

    def __init__(self, directory: str | Path):
        _quiet_orbax()
        policy = pp.AnyPreservationPolicy(
            [
                pp.LatestN(n=1),
                pp.BestN(get_metric_fn=lambda m: m["val_acc"], reverse=False, n=1),
            ]
        )
        self.directory = Path(directory).absolute()
        # In a multi-process run only process 0 checkpoints (the state is replicated and it
        # sends restored states to the others): tell orbax not to wait for the rest.
        options: dict[str, Any] = {}
        if jax.process_count() > 1:
            self.directory.mkdir(parents=True, exist_ok=True)  # orbax will not, in this mode
            me = jax.process_index()
            options["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
                primary_host=me, active_processes={me}
            )
            options["create"] = False
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                preservation_policy=policy,
                enable_async_checkpointing=False,
                cleanup_tmp_directories=True,
                **options,
            ),
            item_names=("state", "meta"),
        )

    def save(self, epoch: int, state: Any, meta: dict[str, Any], val_acc: float) -> None:
        """Save the state after `epoch` (1-based); `meta` must be JSON-serialisable."""
        with _failures_raised_once():
            self._manager.save(
                epoch,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
                metrics={"val_acc": float(val_acc)},
                force=True,
            )
            self._manager.wait_until_finished()

    def latest_epoch(self) -> int | None:
        """The newest complete checkpoint's epoch, or None."""
        return self._manager.latest_step()

    def restore(self, epoch: int, like: Any) -> tuple[Any, dict[str, Any]]:
        """Restore (state, meta) of `epoch`; `like` gives the state's structure and dtypes."""
        abstract = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(
                np.shape(x), np.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype
            ),
            like,
        )
        restored = self._manager.restore(
            epoch,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], restored["meta"]

    def close(self) -> None:
        """Flush and release the manager."""
        self._manager.close()


class NoCheckpoints:
    """Stands in for TrainCheckpoints on processes that do not write (all but process 0)."""

    def latest_epoch(self) -> None:
        return None

    def save(self, epoch: int, state: Any, meta: dict[str, Any], val_acc: float) -> None:
        """Nothing: process 0 writes the checkpoints."""

    def close(self) -> None:
        """Nothing to release."""
