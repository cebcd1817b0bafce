"""``@workflow``: a plain function as a ``WorkflowSpec`` of one node whose handler replays it over the run's record.

Each step runs the function again from the top. Its durable calls return what the run recorded; the first call not
recorded stops the replay (:class:`~abstractruntime_functional.errors.Suspend`) and becomes the step's effect,
``StepPlan(node_id="fn", effect=..., next_node="fn")``, whose result the kernel writes to the call's slot. A body
is kept suspended at its frontier instead and continued at the next step of the same tick (:mod:`.suspended`: a
plain one on a greenlet, an ``async def`` one as a driven coroutine); it replays from the top whenever it cannot be. When the
function returns, the node returns ``complete_output``. A replay that diverges from the record parks the run in a
wait that shows the :class:`NonDeterminismError`; an exception of the body fails the run with its traceback.

An ``async def`` function is replayed the same way by a coroutine the node returns: the kernel awaits it through
``Runtime.awaiter`` (under an ``AsyncRuntime`` on the host's loop; under a sync ``Runtime`` on a private loop).
"""

from __future__ import annotations

import inspect
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import orjson

from abstractruntime.descriptors import EffectCall
from abstractruntime.logs import get_logger
from abstractruntime.models import Effect, EffectOutcome, RunState, StepPlan, WaitReason, WaitState, WorkflowSpec

from .context import _ACTIVE, NODE, NONDETERMINISM_EFFECT, PACKED, STATE, FunctionalContext, pack_results
from .errors import NonDeterminismError, WorkflowBodyError, WorkflowInputError
from .suspended import AVAILABLE, SUSPENDED, DrivenBody, Suspended, SuspendedBodies, drive

log = get_logger("abstractruntime.functional")


def _private(value: Any) -> Any:
    """Arguments are copies: a body that mutates one must not change the run's vars (it would not replay)."""
    if type(value) is dict or type(value) is list:
        return orjson.loads(orjson.dumps(value))
    return value


class FunctionNode:
    """The node handler of a functional workflow (``spec.nodes["fn"]``); ``function`` is the decorated function."""

    def __init__(self, function: Callable[..., Any], workflow_id: str) -> None:
        self.function = function
        self.workflow_id = workflow_id
        params = list(inspect.signature(function).parameters.values())
        if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            raise WorkflowInputError(f"@workflow function {function.__qualname__} must take the context as its "
                                     f"first positional parameter: def {function.__name__}(ctx, ...)")
        self._params = params[1:]
        self._var_keyword = any(p.kind is p.VAR_KEYWORD for p in self._params)
        self.is_async = inspect.iscoroutinefunction(function)
        #: the bodies kept suspended between the steps of a tick (None: every step replays; suspended.py)
        self._bodies = SuspendedBodies() if AVAILABLE or self.is_async else None

    def _bind(self, run: RunState) -> Tuple[List[Any], Dict[str, Any]]:
        """The function's arguments from the run's vars, by parameter name (``**kwargs``: the public vars)."""
        args: List[Any] = []
        kwargs: Dict[str, Any] = {}
        named = set()
        for p in self._params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            named.add(p.name)
            if p.name in run.vars:
                value = _private(run.vars[p.name])
            elif p.default is not p.empty:
                continue
            else:
                raise WorkflowInputError(f"workflow '{self.workflow_id}' needs vars[{p.name!r}] (a parameter of "
                                         f"{self.function.__qualname__}); start the run with "
                                         f"vars={{{p.name!r}: ...}}", run_id=run.run_id, node_id=NODE)
            if p.kind is p.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[p.name] = value
        if self._var_keyword:
            kwargs.update({k: _private(v) for k, v in run.vars.items() if not k.startswith("_") and k not in named})
        return args, kwargs

    def __call__(self, run: RunState, context: Any) -> Any:
        """Replay the function: a StepPlan, or for an ``async def`` function a coroutine of one."""
        state = run.vars.get(STATE)
        if not isinstance(state, dict) or not isinstance(state.get("calls"), dict) \
                or not isinstance(state.get("results"), dict):
            state = run.vars[STATE] = {"calls": {}, "results": {}, PACKED: {}}
        elif not isinstance(state.get(PACKED), dict):
            state[PACKED] = {}  # a run recorded before results were packed
        pack_results(state)
        if self._bodies is not None:
            return self._drive(run, state) if self.is_async else self._continue_or_start(run, state)
        args, kwargs = self._bind(run)
        ctx = FunctionalContext(run, state, self.is_async)
        if self.is_async:
            return self._replay_async(run, ctx, args, kwargs)
        failure: Optional[BaseException] = None
        value: Any = None
        token = _ACTIVE.set(ctx)
        try:
            value = self.function(ctx, *args, **kwargs)
        except Exception as exc:  # a suspension, a divergence or the body's own error: told apart below
            failure = exc
        finally:
            _ACTIVE.reset(token)
        return self._conclude(run, ctx, value, failure)

    def _continue_or_start(self, run: RunState, state: Dict[str, Any]) -> StepPlan:
        """The body of this run suspended at the previous step of this tick continues, else it starts from the top
        (a replay) on a greenlet of its own; either runs to its next frontier or its end (suspended.py)."""
        held = self._bodies.take(run.run_id)
        if held is not None and held.continues(state):
            outcome = held.switch()
        else:
            if held is not None:
                held.close()
            args, kwargs = self._bind(run)
            held = Suspended(FunctionalContext(run, state), state)
            outcome = held.switch(self.function, held.ctx, args, kwargs)
        if outcome is SUSPENDED:
            self._bodies.keep(run.run_id, held, run)
            return held.ctx.plan
        value, failure = outcome
        return self._conclude(run, held.ctx, value, failure)

    async def _drive(self, run: RunState, state: Dict[str, Any]) -> StepPlan:
        """:meth:`_continue_or_start` of an ``async def`` body: its coroutine, driven on the loop (suspended.py)."""
        held = self._bodies.take(run.run_id)
        if held is None or not held.continues(state):
            if held is not None:
                held.close()
            args, kwargs = self._bind(run)
            ctx = FunctionalContext(run, state, True)
            held = DrivenBody(self.function(ctx, *args, **kwargs), ctx, state)
        outcome = await drive(held)
        if outcome is SUSPENDED:
            self._bodies.keep(run.run_id, held, run)
            return held.ctx.plan
        value, failure = outcome
        return self._conclude(run, held.ctx, value, failure)

    async def _replay_async(self, run: RunState, ctx: FunctionalContext, args: List[Any],
                            kwargs: Dict[str, Any]) -> StepPlan:
        failure: Optional[BaseException] = None
        value: Any = None
        token = _ACTIVE.set(ctx)  # this coroutine's context (a task of the loop that awaits it)
        try:
            value = await self.function(ctx, *args, **kwargs)
        except Exception as exc:  # as in the sync replay (a CancelledError is not caught: the step is cancelled)
            failure = exc
        finally:
            _ACTIVE.reset(token)
        return self._conclude(run, ctx, value, failure)

    def _conclude(self, run: RunState, ctx: FunctionalContext, value: Any,
                  failure: Optional[BaseException]) -> StepPlan:
        ctx.check_complete(failure)
        if ctx.error is not None:  # even if the body caught it
            return self._park(run, ctx.error)
        if ctx.plan is not None:  # even if the body swallowed the suspension
            return ctx.plan
        if failure is not None:
            tb = failure.__traceback__.tb_next if failure.__traceback__ is not None else None
            text = "".join(traceback.format_exception(type(failure), failure, tb)).rstrip()
            raise WorkflowBodyError(f"workflow '{self.workflow_id}' raised {type(failure).__name__}: {failure}\n"
                                    f"{text}", run_id=run.run_id, node_id=NODE) from failure
        return StepPlan(node_id=NODE, complete_output=value if isinstance(value, dict) else {"result": value})

    def _park(self, run: RunState, error: NonDeterminismError) -> StepPlan:
        log.warning("non_determinism", run_id=run.run_id, workflow=self.workflow_id, call=error.call,
                    error=error.message)
        payload = {"error": error.message, "call": error.call, "recorded": error.recorded,
                   "replayed": error.replayed}
        return StepPlan(node_id=NODE, effect=Effect(NONDETERMINISM_EFFECT, payload, f"{STATE}.operator"),
                        next_node=NODE)


def workflow(workflow_id: Union[None, str, Callable[..., Any]] = None, *,
             version: Optional[str] = None) -> Any:
    """``@workflow("onboarding")`` (or bare ``@workflow``: the function's name) turns ``def f(ctx, ...)`` -- or
    ``async def f(ctx, ...)``, whose durable calls are awaited -- into a ``WorkflowSpec`` with one node, ``"fn"``;
    run it as any workflow: ``rt.start(workflow=f, vars={...})``."""

    def decorate(function: Callable[..., Any]) -> WorkflowSpec:
        wid = workflow_id if isinstance(workflow_id, str) else function.__name__
        return WorkflowSpec(workflow_id=wid, entry_node=NODE, nodes={NODE: FunctionNode(function, wid)},
                            version=version)

    if callable(workflow_id):
        return decorate(workflow_id)
    return decorate


def nondeterminism_wait(call: EffectCall) -> EffectOutcome:
    """The ``function_nondeterminism`` effect handler: park the run in a wait that shows the error."""
    payload = call.effect.payload
    error = str(payload.get("error") or "the replay diverged from the run's record")
    return EffectOutcome.waiting(WaitState(
        reason=WaitReason.USER, wait_key=f"nondeterminism:{call.run.run_id}:{call.run.step}",
        resume_to_node=call.default_next_node, result_key=call.effect.result_key, prompt=error,
        allow_free_text=True,
        details={"kind": "non_determinism", "error": error, "call": payload.get("call"),
                 "recorded": payload.get("recorded"), "replayed": payload.get("replayed")},
    ))


def function_of(spec: WorkflowSpec) -> Optional[Callable[..., Any]]:
    """The function behind a functional workflow spec (None for a graph workflow)."""
    node = spec.nodes.get(NODE) if len(spec.nodes) == 1 else None
    return node.function if isinstance(node, FunctionNode) else None


__all__ = ["workflow", "FunctionNode", "nondeterminism_wait", "function_of"]
