"""`cnn train` across several processes: joining, planning on process 0, failing fast."""

from __future__ import annotations

from contextlib import contextmanager

import typer

from cnncli.commands.common import fail


def join_cluster(cluster) -> tuple[int, int]:
    """Join the multi-process run, if any: (this process's index, number of processes)."""
    if cluster is None:
        return 0, 1
    from cnncli.training import distributed

    try:
        distributed.initialize(cluster)
    except distributed.DistributedError as exc:
        raise fail(str(exc), 1) from None
    return distributed.process_index(), distributed.process_count()


@contextmanager
def leave_cluster_on_error():
    """In a multi-process run, a process that fails exits at once with its code.

    A normal exit waits in jax.distributed's shutdown barrier for processes that will never
    arrive; exiting hard instead makes the others stop as soon as they lose this one.
    """
    try:
        yield
    except BaseException as exc:
        code = exc.exit_code if isinstance(exc, typer.Exit) else 1
        if isinstance(exc, KeyboardInterrupt):
            code = 130
        from cnncli.training.distributed import in_cluster

        if code and in_cluster():
            import os
            import sys
            import traceback

            if not isinstance(exc, typer.Exit):
                traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise


def plan_across_processes(make_plan, rank: int):
    """Process 0 plans (and writes the run folder); the others receive the plan from it.

    If planning fails on process 0, every process stops with its message.
    """
    from cnncli.training import distributed
    from cnncli.training.run import plan_from_message, plan_message

    if rank == 0:
        try:
            plan = make_plan()
        except Exception as exc:
            distributed.broadcast_json({"error": str(exc)})
            raise
        distributed.broadcast_json(plan_message(plan))
        return plan
    message = distributed.broadcast_json(None)
    if "error" in message:
        raise fail(f"process 0 stopped: {message['error']}")
    return plan_from_message(message)


def request_host_devices(count: int) -> None:
    """On a CPU, ask XLA for `count` host devices (must happen before jax is imported)."""
    import os
    import sys

    if count <= 1 or "jax" in sys.modules:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
