"""Errors of durable functions (docs/functional.md): each says what was wrong and what to do."""

from __future__ import annotations

from typing import Any, Dict, Optional

from abstractruntime.errors import AbstractRuntimeError, InvalidStateError, InvalidTypeError, NotFoundError, \
    ValidationError


class NonDeterminismError(InvalidStateError):
    """Replaying a functional workflow met a call that differs from the one its run recorded at the same number
    (another kind, name or arguments), or the function returned before reaching calls the run recorded. The run is
    not failed: it WAITS (reason ``user``, ``details.kind == "non_determinism"``) until its code is fixed."""

    def __init__(self, message: str, *, run_id: Optional[str] = None, call: Optional[int] = None,
                 recorded: Optional[Dict[str, Any]] = None, replayed: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message, run_id=run_id, node_id="fn")
        self.call = call
        self.recorded = recorded
        self.replayed = replayed


class WorkflowBodyError(AbstractRuntimeError):
    """The body of a functional workflow raised: the run fails, and its error carries the body's traceback."""


class WorkflowInputError(ValidationError):
    """A parameter of a functional workflow has no value in the run's ``vars`` (and no default)."""


class ChildWorkflowError(AbstractRuntimeError):
    """A child started with ``ctx.run_workflow`` ended FAILED or CANCELLED (raised in the parent's body)."""

    def __init__(self, message: str, *, sub_run_id: Optional[str] = None, status: Optional[str] = None) -> None:
        super().__init__(message)
        self.sub_run_id = sub_run_id
        self.status = status


class StepNotFoundError(NotFoundError):
    """An effect names a ``@step`` this process cannot find (its module is not importable here)."""


class NotInStepError(InvalidStateError):
    """``current_step()`` was called outside the execution of a ``@step``."""


class AsyncNotSupportedError(InvalidTypeError):
    """Kept for compatibility: no longer raised (``async def`` workflows and steps are supported since the
    AsyncRuntime landed; docs/functional.md#async-workflows-and-steps)."""


class Suspend(AbstractRuntimeError):
    """Internal: raised by a durable call that is not recorded yet, to stop the replay there (the step's plan is on
    the context). Never seen by a host; a body that swallows it is stopped at its next durable call."""

    def __init__(self) -> None:
        super().__init__("the functional workflow is suspended at a durable call (internal; do not catch this)")


__all__ = ["NonDeterminismError", "WorkflowBodyError", "WorkflowInputError", "ChildWorkflowError",
           "StepNotFoundError", "NotInStepError", "AsyncNotSupportedError", "Suspend"]
