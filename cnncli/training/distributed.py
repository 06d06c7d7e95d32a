"""Several processes (hosts) training one model: jax.distributed set-up and their messages.

Process 0 plans the run, writes every file and checkpoint, and tells the others what it
decided (the run folder, config, split, restored state, when to stop). Every other process
decodes only its shards of the split and feeds its rows of each global batch. With one
process every helper here is the identity and no collective is ever made.

`resolve_cluster` runs before jax is imported (argument errors stay fast); the rest
imports jax.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cnncli.config import ConfigError


class DistributedError(RuntimeError):
    """Joining the cluster failed, or process 0 failed and told the others why."""


@dataclass(frozen=True)
class ClusterSpec:
    """How to join: an explicit coordinator, or "auto" (JAX detects SLURM, Open MPI, TPU...)."""

    coordinator: str = "auto"
    num_processes: int | None = None
    process_id: int | None = None


def resolve_cluster(
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    environ: Mapping[str, str] = os.environ,
) -> ClusterSpec | None:
    """The cluster to join from the flags, else from a launcher's environment; None = alone.

    Without flags, a job step of more than one task under SLURM (srun) or Open MPI
    (mpirun) joins automatically, as jax.distributed detects those launchers.
    """
    if coordinator is None and num_processes is None and process_id is None:
        if "SLURM_STEP_ID" in environ and _int_env(environ, "SLURM_NTASKS") > 1:
            return ClusterSpec()
        if _int_env(environ, "OMPI_COMM_WORLD_SIZE") > 1:
            return ClusterSpec()
        return None
    if coordinator is None:
        raise ConfigError("--num-processes/--process-id need --coordinator HOST:PORT (or auto)")
    if num_processes is not None and num_processes < 1:
        raise ConfigError(f"--num-processes must be >= 1, got {num_processes}")
    if coordinator == "auto":
        return ClusterSpec("auto", num_processes, process_id)
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--coordinator must be HOST:PORT or auto, got {coordinator!r}")
    if num_processes is None or process_id is None:
        raise ConfigError("--coordinator HOST:PORT needs --num-processes N and --process-id I")
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id must be in [0, {num_processes}), got {process_id}")
    if num_processes == 1:
        return None
    return ClusterSpec(coordinator, num_processes, process_id)


def _int_env(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ.get(name, "1"))
    except ValueError:
        return 1


def initialize(spec: ClusterSpec, timeout_s: int = 300) -> None:
    """Join the cluster (jax.distributed.initialize); CPUs talk over gloo."""
    import jax

    # CPU collectives across processes need gloo; GPUs and TPUs use their own (NCCL, ICI).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs: dict[str, Any] = {"initialization_timeout": timeout_s}
    if spec.coordinator != "auto":
        kwargs["coordinator_address"] = spec.coordinator
    if spec.num_processes is not None:
        kwargs["num_processes"] = spec.num_processes
    if spec.process_id is not None:
        kwargs["process_id"] = spec.process_id
    try:
        jax.distributed.initialize(**kwargs)
        # The first collective connects the processes; gloo announces that on stdout, which
        # belongs to --json output, so it goes to stderr.
        with _stdout_to_stderr():
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("cnn: joined")
    except (RuntimeError, ValueError) as exc:
        where = spec.coordinator if spec.coordinator != "auto" else "the detected cluster"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistributedError(f"cannot join {where}: {first}") from None


@contextmanager
def _stdout_to_stderr():
    """Point file descriptor 1 at stderr for a while (for output printed by C++ code)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def process_index() -> int:
    """This process's index (0 when alone); does not start jax's backends when alone."""
    import jax

    return jax.process_index() if _joined() else 0


def process_count() -> int:
    """Processes in the run (1 when alone)."""
    import jax

    return jax.process_count() if _joined() else 1


def in_cluster() -> bool:
    """True once this process has joined a run of several processes; never imports jax
    (so error paths before jax started stay fast)."""
    if "jax" not in sys.modules:
        return False
    return process_count() > 1


def _joined() -> bool:
    import jax

    return jax.distributed.is_initialized()


def broadcast_json(value: Any) -> Any:
    """Process 0's JSON-serialisable value, on every process (others pass anything)."""
    if process_count() == 1:
        return value
    import numpy as np
    from jax.experimental import multihost_utils

    data = json.dumps(value).encode() if process_index() == 0 else b""
    size = multihost_utils.broadcast_one_to_all(np.array([len(data)], np.int64))
    buffer = np.zeros(int(size[0]), np.uint8)
    if process_index() == 0:
        buffer[:] = np.frombuffer(data, np.uint8)
    received = np.asarray(multihost_utils.broadcast_one_to_all(buffer), np.uint8)
    return json.loads(received.tobytes().decode())


def broadcast_tree(tree: Any) -> Any:
    """Process 0's arrays (numpy), on every process; others pass a tree of the same shapes."""
    if process_count() == 1:
        return tree
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    host = jax.tree_util.tree_map(np.asarray, tree)
    return jax.tree_util.tree_map(np.asarray, multihost_utils.broadcast_one_to_all(host))


def sum_over_processes(values: Any) -> Any:
    """Element-wise sum of a small float64 vector over all processes."""
    import numpy as np

    values = np.asarray(values, np.float64)
    if process_count() == 1:
        return values
    from jax.experimental import multihost_utils

    # Gathered as raw 32-bit words (jax keeps no float64 by default) and summed on the host
    # in float64, in process order: the same bits on every process.
    words = np.ascontiguousarray(values.reshape(-1)).view(np.uint32)
    gathered = np.asarray(multihost_utils.process_allgather(words), np.uint32)
    parts = np.ascontiguousarray(gathered).view(np.float64).reshape(-1, *values.shape)
    return parts.sum(axis=0)
