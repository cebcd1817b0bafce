"""Builtin plugin ``functional``: durable functions -- a workflow written as one plain Python function, replayed
over the run's record (docs/functional.md).

``from abstractruntime.functional import workflow, step`` (the namespace overlay re-exports this package):
``@workflow("id")`` makes a ``WorkflowSpec`` with one node, ``"fn"``, whose handler replays the function; its durable
calls (``ctx.ask_user``, ``ctx.sleep``, ``ctx.wait_event``, ``ctx.llm_call``, ``ctx.run_workflow``, ``ctx.effect``,
a ``@step`` function, and the recorded ``ctx.now()`` / ``ctx.random()`` / ``ctx.uuid()`` / ``ctx.patched(id)``) are
numbered by call order and recorded under ``vars["_fn"]`` (``recorded_results(state.vars)`` decodes the results).
Between the steps of one tick a body is continued instead of replayed (``suspended.py``): a plain one on a
greenlet, an ``async def`` one as a coroutine driven on the AsyncRuntime's loop.
An ``async def`` workflow awaits its durable calls, and an ``async def`` step runs as an async effect handler: both
work under the ``AsyncRuntime`` (awaited on the host's loop) and the sync ``Runtime`` (a private loop per step).

Effect handlers (``abstractruntime_register_effect_handlers``):

- ``function_step`` (``side_effects=True``): runs a ``@step`` function found by its registered name, with the
  payload's JSON arguments, under the kernel's reservation/idempotency protocol;
- ``function_nondeterminism`` (``side_effects=False``): parks a run whose replay diverged from its record in a
  ``user`` wait whose prompt and ``details`` (``kind: "non_determinism"``) show the error.

``abstractruntime_execute_effect`` (a wrapper): an effect of a functional workflow (its ``result_key`` under
``_fn.results``) that completes without a result completes with ``{}``, so a recorded call without a result always
means "not completed" (an effect that failed, of a run set RUNNING again by ``retry_run``) -- except a timer.

No options. The effects a body requests come from their own plugins (``waits``, ``events``,
``subworkflows``, ``abstractcore``).
"""

from __future__ import annotations

from typing import Any, Generator, List, Optional

from abstractruntime import EffectCall, EffectHandlerDescriptor, EffectOutcome, hookimpl
from abstractruntime_pluginkit.lazy import lazy_exports, lazy_function

__getattr__, __dir__ = lazy_exports(__name__, {
    "workflow": ".replay", "FunctionNode": ".replay", "function_of": ".replay",
    "step": ".steps", "current_step": ".steps", "StepInfo": ".steps", "StepDefinition": ".steps",
    "registered_steps": ".steps",
    "FunctionalContext": ".context", "recorded_results": ".context",
    "NonDeterminismError": ".errors", "WorkflowBodyError": ".errors", "WorkflowInputError": ".errors",
    "ChildWorkflowError": ".errors", "StepNotFoundError": ".errors", "NotInStepError": ".errors",
    "AsyncNotSupportedError": ".errors",
})

__all__ = ["workflow", "step", "current_step", "StepInfo", "StepDefinition", "registered_steps", "FunctionNode",
           "function_of", "FunctionalContext", "recorded_results", "NonDeterminismError", "WorkflowBodyError",
           "WorkflowInputError", "ChildWorkflowError", "StepNotFoundError", "NotInStepError", "AsyncNotSupportedError"]


@hookimpl
def abstractruntime_register_effect_handlers() -> List[EffectHandlerDescriptor]:
    return [
        EffectHandlerDescriptor("function_step", lazy_function(__name__, ".steps", "function_step"),
                                "Run a @step function of a functional workflow", side_effects=True),
        EffectHandlerDescriptor("function_nondeterminism", lazy_function(__name__, ".replay", "nondeterminism_wait"),
                                "Park a functional workflow whose replay diverged", side_effects=False),
    ]


@hookimpl(wrapper=True)
def abstractruntime_execute_effect(call: EffectCall) -> Generator[Any, Any, Optional[EffectOutcome]]:
    """A functional workflow's effect that completes without a result completes with ``{}``."""
    outcome = yield
    if outcome is not None and outcome.status == "completed" and outcome.result is None \
            and _is_functional(call):
        return EffectOutcome.completed({})
    return outcome


def _is_functional(call: EffectCall, **_: Any) -> bool:
    return (call.effect.result_key or "").startswith("_fn.results.")


abstractruntime_execute_effect.active = _is_functional  # type: ignore[attr-defined]  # docs/hooks.md, ``active``
