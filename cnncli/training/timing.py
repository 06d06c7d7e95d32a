"""Where a run's time went (decode, first step with its compile, each epoch) and on what machine.

Written to RUN/timing.json during training, so the HTML report and `cnn runs` can read it;
nothing here imports jax unless asked for the machine's devices.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from cnncli.atomic import atomic_write_text

TIMING_FILE = "timing.json"


def machine_info() -> dict[str, Any]:
    """The host and the accelerator jax trains on (call after jax is imported)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import jax

        devices = jax.devices()
        info["jax"] = jax.__version__
        info["backend"] = jax.default_backend()
        info["devices"] = f"{len(devices)} x {devices[0].device_kind}"
    except Exception as exc:  # no usable backend: the report still shows the host
        info["devices"] = f"unknown ({type(exc).__name__})"
    return info


def read_timing(run_dir: str | Path) -> dict[str, Any]:
    """RUN/timing.json, or {} when it is missing or unreadable."""
    try:
        data = json.loads((Path(run_dir) / TIMING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class CompileClock:
    """Seconds jax spends tracing, lowering and compiling while the context is open.

    Counted from jax.monitoring's compile-duration events (a listener registered on entry
    and removed on exit), so a caller can tell an epoch's compiling from its training.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def _on_event(self, name: str, seconds: float, **_: Any) -> None:
        if name.startswith("/jax/core/compile/"):
            self.seconds += seconds

    def __enter__(self) -> CompileClock:
        import jax.monitoring

        jax.monitoring.register_event_duration_secs_listener(self._on_event)
        return self

    def __exit__(self, *exc: object) -> None:
        import jax.monitoring

        jax.monitoring.unregister_event_duration_listener(self._on_event)


class RunTimer:
    """Collects one training session's timings and appends them to RUN/timing.json.

    A resumed run adds a session; epochs are keyed by number, so a repeated epoch replaces
    the earlier timing.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / TIMING_FILE
        self.data = read_timing(run_dir)
        self.session: dict[str, Any] = {
            "started": time.time(),
            "pid": os.getpid(),
            "host": platform.node(),
        }
        self.data.setdefault("sessions", []).append(self.session)
        self.data.setdefault("epochs", {})
        self._epoch_started = None
        self.save()  # marks the run as running (pid) until finish() or the process dies

    def decoded(self, seconds: float, images: int) -> None:
        """Decoding (or reading the cache of) the training and validation images."""
        self.session["decode_s"] = round(seconds, 3)
        self.session["images"] = images

    def epoch_started(self) -> None:
        self._epoch_started = time.perf_counter()

    def first_step(self) -> None:
        """Called after each step; the first of the session includes jit compilation."""
        if "first_step_s" not in self.session and self._epoch_started is not None:
            self.session["first_step_s"] = round(time.perf_counter() - self._epoch_started, 3)

    def epoch_ended(self, epoch: int, seconds: float) -> None:
        self.data["epochs"][str(epoch)] = round(seconds, 3)
        self.session["wall_s"] = round(time.time() - self.session["started"], 3)
        self.save()

    def finish(self) -> None:
        """The session ended (finished, stopped early, or interrupted with Ctrl-C)."""
        self.session["wall_s"] = round(time.time() - self.session["started"], 3)
        self.session["ended"] = True
        self.save()

    def save(self) -> None:
        if "machine" not in self.data:
            self.data["machine"] = machine_info()
        atomic_write_text(self.path, json.dumps(self.data, indent=2) + "\n")
