"""Builtin plugin ``recovery``: continue a FAILED run from its last checkpoint (docs/operations.md).

* ``runtime.retry_run(run_id, *, reason=None) -> RunState`` -- the failed run is RUNNING again at the node that
  failed, its ``error`` cleared, a ``retry`` row in its ledger; the next ``tick`` (yours, the scheduler's, a
  PostgreSQL worker's) runs that step again. A run that is not FAILED is refused (:class:`RunNotFailedError`).
* ``abstractruntime runs retry RUN [--reason TEXT]`` -- the same from the command line.
"""

from __future__ import annotations

from typing import Any, List

from abstractruntime import hookimpl
from abstractruntime.descriptors import CliCommandDescriptor, RuntimeMethodDescriptor

from .retry import RETRY_EFFECT_TYPE, RunNotFailedError, retry_run

__all__ = ["retry_run", "RunNotFailedError", "RETRY_EFFECT_TYPE"]


@hookimpl
def abstractruntime_register_runtime_methods() -> List[RuntimeMethodDescriptor]:
    return [RuntimeMethodDescriptor(
        "retry_run", retry_run,
        "Set a FAILED run RUNNING again at the step that failed (its last checkpoint); the ledger records the retry")]


def _cli_retry_args(parser: Any) -> None:
    parser.add_argument("run_id")
    parser.add_argument("--reason", help="why it is retried (kept in the ledger's retry row)")


def _cli_retry(args: Any, runtime: Any) -> int:
    from abstractruntime_cli.output import show

    state = retry_run(runtime, args.run_id, reason=args.reason)
    show({"run_id": state.run_id, "status": state.status.value, "current_node": state.current_node,
          "note": "a worker or scheduler continues it (or tick it yourself)"}, args.json)
    return 0


@hookimpl
def abstractruntime_register_cli_commands() -> List[CliCommandDescriptor]:
    return [CliCommandDescriptor("runs retry", "continue a FAILED run from its last checkpoint (the failed step runs "
                                 "again when a worker or scheduler ticks it)", _cli_retry_args, _cli_retry)]
