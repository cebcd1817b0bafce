"""The ``ctx`` of a functional workflow: every durable call, numbered by call order and replayed from the run's vars.

What a run recorded lives under ``vars["_fn"]``: ``calls["<n>"]`` is ``"<kind> <name> <digest>"`` (the
non-determinism check: the digest is of the call's arguments) and ``packed["<n>"]`` its result as JSON text. An
effect's ``result_key`` is ``results.<n>``, so the kernel writes the result there as a value; the next replay moves
it to ``packed`` (:func:`pack_results`). Text, because the kernel checks and encodes the run's vars at every step:
a string costs one type check there, a nested value a walk, and a long run's record is most of its vars. All are
dicts keyed by the call number: a replayed call costs two dict lookups, the digest of its arguments and the parse
of its result (which is also the private copy the body gets). A call recorded without a result completed without
one (a due timer); a call not recorded is the frontier: it becomes the step's effect.

In an ``async def`` workflow the durable calls are awaited: a recorded call returns a coroutine that returns its
result at once; the frontier raises the internal Suspend at the call, through the body's coroutine -- or, in a body
driven by suspended.py, returns an awaitable that stops the body there until the next step (:class:`_Frontier`).
Between the steps of a tick a plain body waits at its frontier on a greenlet instead (:meth:`_suspend`).
"""

from __future__ import annotations

import asyncio
import functools
import random as _random
import uuid as _uuid
import zlib
from contextvars import ContextVar
from datetime import datetime, timedelta
from math import isfinite
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import orjson

from abstractruntime.errors import ValidationError
from abstractruntime.models import Effect, EffectType, RunState, StepPlan, WorkflowSpec, coerce_effect_type, \
    effect_type_value
from abstractruntime.timeutil import now_utc, parse_instant

from .errors import ChildWorkflowError, NonDeterminismError, Suspend

NODE = "fn"  #: the one node of a functional workflow
STATE = "_fn"  #: the namespace of ``vars`` holding the recorded calls
PACKED = "packed"  #: ``_fn.packed["<n>"]``: a recorded result, as JSON text
STEP_EFFECT = "function_step"
NONDETERMINISM_EFFECT = "function_nondeterminism"
_ANSWER_KEYS = ("response", "text", "answer", "value")

_MISSING = object()
#: what a frontier switches to the node with, on a greenlet, or yields to an async body's driver (suspended.py)
SUSPENDED = object()
#: ``ctx._parent`` of an ``async def`` body that a driver keeps suspended at its frontiers (suspended.py)
DRIVER = object()
#: frontiers that usually end the tick (a wait): they unwind the body even on a greenlet (suspended.py)
_WAITS = frozenset({"ask_user", "wait_event", "sleep"})

_ACTIVE: "ContextVar[Optional[FunctionalContext]]" = ContextVar("abstractruntime_functional_context", default=None)

Build = Callable[..., Tuple[Union[EffectType, str], Dict[str, Any]]]


def active_context() -> "Optional[FunctionalContext]":
    """The context of the workflow body running in this thread, if any (``@step`` functions consult it)."""
    return _ACTIVE.get()


def digest(value: Any) -> str:
    """A short digest of a call's arguments: CRC-32 of their canonical JSON (``repr`` for what JSON cannot hold,
    which the kernel then refuses to store with a JsonInvariantError naming it). A check, not a security measure."""
    try:
        data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        data = repr(value).encode("utf-8", "backslashreplace")
    return f"{zlib.crc32(data):08x}"


_CONTAINERS = (dict, list)


def copy_json(value: Any) -> Any:
    """A private copy of a recorded value: a body that mutates what a call returned must not change the record."""
    if type(value) in _CONTAINERS:
        return orjson.loads(orjson.dumps(value))
    return value


def pack_results(state: Dict[str, Any]) -> None:
    """Move the results the kernel wrote to ``_fn.results`` (usually the one of the last step) to ``_fn.packed`` as
    JSON text: O(1) per step, and the kernel's per-step check of the vars then sees one string per call."""
    results = state["results"]
    if results:
        packed = state[PACKED]
        for key in list(results):
            try:
                packed[key] = orjson.dumps(results[key]).decode()
            except TypeError:  # not JSON (the kernel refuses to store it anyway): left where it is
                continue
            del results[key]


def recorded_results(vars: Dict[str, Any]) -> Dict[str, Any]:
    """The results a functional run recorded, by call number (``"0"``, ``"1"``, ...), decoded: for hosts and tests
    that read ``state.vars`` (a call recorded without a result -- a due timer -- is absent)."""
    state = vars.get(STATE) if isinstance(vars, dict) else None
    if not isinstance(state, dict):
        return {}
    found = {k: orjson.loads(v) for k, v in (state.get(PACKED) or {}).items()}
    found.update(state.get("results") or {})
    return dict(sorted(found.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else -1))


async def _resolved(value: Any) -> Any:
    """What a recorded durable call returns in an ``async def`` workflow: awaited, it gives the result at once."""
    return value


def describe(meta: str, arguments: bool = True) -> str:
    """``"step mod:charge 1a2b"`` -> ``step 'mod:charge' (arguments 1a2b)``."""
    kind, _, rest = meta.partition(" ")
    name, _, arg_digest = rest.rpartition(" ")
    return f"{kind} {name!r}" + (f" (arguments {arg_digest})" if arg_digest and arguments else "")


def _step_payload(n: int, name: str, args: Tuple[Any, ...], kwargs: Dict[str, Any], retries: Optional[int],
                  backoff_s: float) -> Tuple[str, Dict[str, Any]]:
    payload: Dict[str, Any] = {"step": name, "args": list(args), "kwargs": dict(kwargs)}
    if retries:
        payload.update(retries=retries, backoff_s=backoff_s)
    return STEP_EFFECT, payload


class _Parked(Suspend):
    """Internal: the frontier ``n`` of a driven ``async def`` body (caught by :func:`_parkable`, never seen by it)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n


def _parkable(method: Callable[..., Any]) -> Callable[..., Any]:
    """A durable call whose frontier, in a driven ``async def`` body, returns a :class:`_Frontier` to await."""

    @functools.wraps(method)
    def call(self: "FunctionalContext", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except _Parked as parked:
            return _Frontier(self, call, args, kwargs, parked.n)

    return call


class _Frontier:
    """What the frontier call of a driven ``async def`` body returns (its plan is set). Awaited by the body itself,
    it yields :data:`SUSPENDED` to the driver, which returns the plan and keeps the body; continued at the next step,
    it makes the call again (its result is recorded by then) and returns what that returns. Awaited anywhere else
    (a task of the body's own), it unwinds the body as a replay does."""

    __slots__ = ("ctx", "method", "args", "kwargs", "n")

    def __init__(self, ctx: "FunctionalContext", method: Callable[..., Any], args: Tuple[Any, ...],
                 kwargs: Dict[str, Any], n: int) -> None:
        self.ctx, self.method, self.args, self.kwargs, self.n = ctx, method, args, kwargs, n

    def __await__(self) -> Any:
        ctx = self.ctx
        if ctx.driven_by is None or ctx.driven_by is not asyncio.current_task():
            raise Suspend()
        yield SUSPENDED
        ctx._n = self.n
        # the call again: its result (an awaitable of it), or -- issued and not completed -- the frontier again
        return (yield from self.method(ctx, *self.args, **self.kwargs).__await__())


def _answer(payload: Any) -> Any:
    """What ``ask_user`` returns: the answer of a one-key payload (``{"response": ...}`` from the console,
    ``{"text": ...}``, ``{"answer": ...}``, ``{"value": ...}``), else the whole resume payload."""
    if type(payload) is dict and len(payload) == 1:
        ((key, value),) = payload.items()
        if key in _ANSWER_KEYS:
            return value
    return payload  # a private copy already (FunctionalContext._lookup)


class FunctionalContext:
    """Passed as the first argument of a ``@workflow`` function. Its methods are the durable calls; the rest of the
    body must be deterministic (docs/functional.md#what-must-be-deterministic)."""

    def __init__(self, run: RunState, state: Dict[str, Any], is_async: bool = False) -> None:
        self.run_id: str = run.run_id
        self.workflow_id: str = run.workflow_id
        self.session_id: Optional[str] = run.session_id
        self.actor_id: Optional[str] = run.actor_id
        self._state = state
        self._calls: Dict[str, str] = state["calls"]
        self._results: Dict[str, Any] = state["results"]
        self._packed: Dict[str, str] = state[PACKED]
        self._async = is_async  # an ``async def`` body: durable calls return awaitables
        self._recorded = len(self._calls)
        self._n = 0
        self._dirty = False  # values recorded in this pass that are not in the store yet
        self.plan: Optional[StepPlan] = None  # set by the frontier call: what the node returns
        self.error: Optional[NonDeterminismError] = None
        self._parent: Any = None  # on a greenlet: what a frontier switches to (suspended.py); else it raises
        self.driven_by: Any = None  # the task of the driver running an async body just now (suspended.py)

    @property
    def calls_made(self) -> int:
        return self._n

    @property
    def calls_recorded(self) -> int:
        return self._recorded

    # --- the replay machinery ---------------------------------------------------------------------------------
    def suspend_to(self, parent: Any) -> None:
        """Frontiers switch to the greenlet ``parent`` (:data:`DRIVER`: they are awaited; None: they raise
        Suspend); a body continued after the step that executed its plan starts a new pass over the same record
        (:mod:`.suspended`)."""
        self._parent = parent
        if parent is not None and self.plan is not None:
            self.plan = None
            self._dirty = False
            self._recorded = len(self._calls)

    def _suspend(self, n: int, kind: str) -> None:
        """Stop at the frontier call ``n`` (``self.plan`` is set): unwind the body, or on a greenlet switch to the
        node and, continued at the next step, go back to call ``n``, whose result is recorded now."""
        if self._parent is None or kind in _WAITS:
            raise Suspend()
        if self._parent is DRIVER:
            raise _Parked(n)  # the call returns a _Frontier: the body awaits it
        self._parent.switch(SUSPENDED)
        self._n = n

    def _enter(self) -> None:
        if self.plan is not None:
            raise Suspend()  # the body swallowed the suspension: stop at its next durable call
        if self.error is not None:
            raise self.error

    def _next(self, kind: str, name: str, arg_digest: str) -> Tuple[str, str, bool]:
        self._enter()
        n = self._n
        self._n = n + 1
        key = str(n)
        meta = f"{kind} {name} {arg_digest}"
        recorded = self._calls.get(key)
        if recorded is None:
            return key, meta, False
        if recorded != meta:
            self._diverged(n, recorded, meta)
        return key, meta, True

    def _diverged(self, n: int, recorded: str, meta: str) -> None:
        same_call = recorded.rpartition(" ")[0] == meta.rpartition(" ")[0]
        what = (f"{describe(recorded, False)} with other arguments (digest {meta.rpartition(' ')[2]}; the run "
                f"recorded {recorded.rpartition(' ')[2]})" if same_call
                else f"{describe(meta)} instead of {describe(recorded)}")
        self.error = NonDeterminismError(
            f"Functional workflow '{self.workflow_id}' is not deterministic: replaying run {self.run_id}, call #{n} "
            f"is {what}. A replay must make the durable calls the run recorded, in the same order with the same "
            f"arguments. The run waits (it is not failed): fix the code or guard the change with ctx.patched(...) "
            f"(docs/functional.md#versioning), then resume the run to replay it again, or cancel it.",
            run_id=self.run_id, call=n, recorded={"call": n, "description": describe(recorded)},
            replayed={"call": n, "description": describe(meta)})
        raise self.error

    def check_complete(self, raised: Optional[BaseException] = None) -> None:
        """The body returned (or raised ``raised``): it must have made every call the run recorded. A body that
        raises before a call it made in an earlier pass changed: non-determinism too, not a failure of the run."""
        if self.plan is None and self.error is None and self._n < self._recorded:
            recorded = self._calls.get(str(self._n), "? ? ")
            what = "returned" if raised is None else f"raised {type(raised).__name__}: {raised}"
            self.error = NonDeterminismError(
                f"Functional workflow '{self.workflow_id}' is not deterministic: replaying run {self.run_id}, the "
                f"function {what} after {self._n} durable calls, but the run recorded {self._recorded} (call "
                f"#{self._n} was {describe(recorded)}). The run waits (it is not failed): fix the code or guard "
                f"the change with ctx.patched(...) (docs/functional.md#versioning), then resume it, or cancel it.",
                run_id=self.run_id, call=self._n, recorded={"call": self._n, "description": describe(recorded)},
                replayed={"call": self._n, "description": "return" if raised is None else what})

    def _value(self, kind: str, make: Callable[[], Any]) -> Any:
        key, meta, recorded = self._next(kind, kind, "")
        if recorded:
            return self._lookup(key, None)
        value = make()
        self._calls[key] = meta
        self._packed[key] = orjson.dumps(value).decode()
        self._recorded = self._n
        self._dirty = True
        return value

    def _lookup(self, key: str, default: Any = _MISSING) -> Any:
        """The recorded result of call ``key`` as a private copy (a body that mutates it changes nothing)."""
        text = self._packed.get(key)
        if text is not None:
            return orjson.loads(text)
        result = self._results.get(key, default)  # written by the kernel in this step, not packed yet
        return copy_json(result)

    def _out(self, value: Any) -> Any:
        """What a durable call returns to the body: the value, or in an async body an awaitable of it."""
        return _resolved(value) if self._async else value

    def _effect(self, kind: str, name: str, arguments: Any, build: Build, *build_args: Any) -> Any:
        """The recorded result of this call (a private copy), else (the frontier) suspend with its effect:
        ``build(n, *build_args)`` makes the effect's type and payload (called at the frontier only)."""
        arg_digest = digest(arguments)
        while True:
            key, meta, recorded = self._next(kind, name, arg_digest)
            if recorded:
                result = self._lookup(key)
                if result is not _MISSING:
                    return result
                if kind == "sleep":
                    return None  # a timer that came due: the kernel cleared the wait and wrote nothing
                # Issued and not completed (every completion writes a result: the plugin's execute_effect wrapper):
                # the effect failed and the run was set RUNNING again (``retry_run``). It is the frontier again.
            n = self._n - 1
            if self._dirty:
                # Values recorded in this pass reach the store first (a pure step): a side effect's reservation
                # checkpoints the state *before* its step, and its replay after a crash must see the same values.
                self.plan = StepPlan(node_id=NODE, next_node=NODE)
            else:
                effect_type, payload = build(n, *build_args)
                payload["functional_call"] = {"number": n, "name": name}
                self._calls[key] = meta
                self.plan = StepPlan(node_id=NODE, effect=Effect(effect_type, payload, f"{STATE}.results.{key}"),
                                     next_node=NODE)
            self._suspend(n, kind)

    # --- recorded values --------------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The current instant (aware, UTC), recorded: a replay returns the same instant."""
        return parse_instant(self._value("now", lambda: now_utc().isoformat()))

    def random(self) -> float:
        """A random float in [0, 1), recorded."""
        return self._value("random", _random.random)

    def uuid(self) -> str:
        """A random UUID (version 4) as a string, recorded."""
        return self._value("uuid", lambda: str(_uuid.uuid4()))

    def patched(self, patch_id: str) -> bool:
        """True where the run meets this check for the first time at its frontier (new code), False in a run that
        already went past this point with the old code; recorded per ``patch_id`` (docs/functional.md#versioning).
        Takes no call number, so adding ``if ctx.patched(...)`` does not shift the calls after it."""
        self._enter()
        if not isinstance(patch_id, str) or not patch_id.strip():
            raise ValidationError(f"ctx.patched() needs a non-empty string id, got {patch_id!r}")
        patches = self._state.get("patches")
        if not isinstance(patches, dict):
            patches = self._state["patches"] = {}
        found = patches.get(patch_id)
        if isinstance(found, bool):
            return found
        value = self._n >= self._recorded
        patches[patch_id] = value
        self._dirty = True
        return value

    # --- effects ----------------------------------------------------------------------------------------------
    def call_step(self, name: str, args: Tuple[Any, ...], kwargs: Dict[str, Any], retries: Optional[int],
                  backoff_s: float) -> Any:
        """A ``@step`` called in the body (the decorator calls this): its recorded result, else its effect."""
        if self.plan is None and self.error is None:  # the hot path of a replay, inlined: a recorded step
            n = self._n
            key = str(n)
            recorded = self._calls.get(key)
            if recorded is not None:
                try:
                    data = orjson.dumps((args, kwargs), option=orjson.OPT_SORT_KEYS)
                except TypeError:
                    data = None
                if data is not None and recorded == "step %s %08x" % (name, zlib.crc32(data)):  # (f-string: slower)
                    text = self._packed.get(key)
                    if text is not None:
                        result = orjson.loads(text)  # a private copy
                        if type(result) is dict:
                            self._n = n + 1
                            value = result.get("value")
                            return _resolved(value) if self._async else value
        try:  # (not @_parkable: a wrapper would cost every replayed step a call)
            result = self._effect("step", name, (args, kwargs), _step_payload, name, args, kwargs, retries, backoff_s)
        except _Parked as parked:
            return _Frontier(self, FunctionalContext.call_step, (name, args, kwargs, retries, backoff_s), {},
                             parked.n)
        return self._out(result.get("value") if type(result) is dict else None)

    def ask_user(self, prompt: str, *, choices: Optional[List[str]] = None, allow_free_text: Optional[bool] = None,
                 wait_key: Optional[str] = None) -> Any:
        """Wait for a person (ASK_USER). Returns the answer: the value of a one-key resume payload (``response``,
        ``text``, ``answer`` or ``value``), else the payload itself. ``allow_free_text`` defaults to "no choices"."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValidationError(f"ctx.ask_user() needs a non-empty prompt, got {prompt!r}")
        free = allow_free_text if allow_free_text is not None else not choices

        def build(n: int) -> Tuple[EffectType, Dict[str, Any]]:
            return EffectType.ASK_USER, {"prompt": prompt, "choices": list(choices) if choices else None,
                                         "allow_free_text": free,
                                         "wait_key": wait_key or f"user:{self.run_id}:{NODE}:{n}"}

        return self._out(_answer(self._effect("ask_user", "ask_user", (prompt, choices, free, wait_key), build)))

    def sleep(self, seconds: Optional[float] = None, *, until: Union[None, str, datetime] = None) -> Any:
        """A durable timer (WAIT_UNTIL): ``seconds`` from when the run first reaches it (that instant is recorded),
        or ``until`` an instant (aware datetime or ISO-8601 string)."""
        if (seconds is None) == (until is None):
            raise ValidationError("ctx.sleep() takes seconds=... or until=..., exactly one of them")
        if until is not None:
            instant = parse_instant(until.isoformat() if isinstance(until, datetime) else until).isoformat()
            arguments: Dict[str, Any] = {"until": instant}
        else:
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not isfinite(seconds) \
                    or seconds < 0:
                raise ValidationError(f"ctx.sleep(seconds=...) needs a finite number >= 0, got {seconds!r}")
            instant, arguments = "", {"seconds": seconds}

        def build(n: int) -> Tuple[EffectType, Dict[str, Any]]:
            at = instant or (now_utc() + timedelta(seconds=float(seconds or 0))).isoformat()
            return EffectType.WAIT_UNTIL, {"until": at}

        self._effect("sleep", "sleep", arguments, build)
        return self._out(None)

    def wait_event(self, name: str, *, scope: str = "session", session_id: Optional[str] = None,
                   wait_key: Optional[str] = None) -> Any:
        """Wait for an event (WAIT_EVENT) named ``name`` in ``scope`` (the events plugin's keys: an EMIT_EVENT of the
        same name, or ``resume`` with the wait key). Returns the resume payload (an event's envelope)."""
        arguments = {"name": name, "scope": scope, "session_id": session_id, "wait_key": wait_key}

        def build(n: int) -> Tuple[EffectType, Dict[str, Any]]:
            return EffectType.WAIT_EVENT, {k: v for k, v in arguments.items() if v is not None}

        return self._out(self._effect("wait_event", name, arguments, build))

    @_parkable
    def llm_call(self, prompt: Optional[str] = None, *, messages: Optional[List[Dict[str, Any]]] = None,
                 **fields: Any) -> Any:
        """An LLM call (LLM_CALL, the abstractcore plugin); ``fields`` are the effect's other payload keys
        (``provider``, ``model``, ``system_prompt``, ``params``, ``response_schema``, ...). Returns its result."""
        payload = {"prompt": prompt, "messages": messages, **fields}
        payload = {k: v for k, v in payload.items() if v is not None}
        return self._out(self._effect("llm_call", "llm_call", payload,
                                      lambda n: (EffectType.LLM_CALL, dict(payload))))

    @_parkable
    def run_workflow(self, workflow: Union[WorkflowSpec, str], vars: Optional[Dict[str, Any]] = None, *,
                     session_id: Optional[str] = None) -> Any:
        """Start a child workflow (START_SUBWORKFLOW; it must be in the runtime's ``workflow_registry``) and wait
        for it; returns its output. A child that fails or is cancelled raises :class:`ChildWorkflowError`."""
        workflow_id = workflow.workflow_id if isinstance(workflow, WorkflowSpec) else workflow
        if not isinstance(workflow_id, str) or not workflow_id.strip():
            raise ValidationError(f"ctx.run_workflow() needs a WorkflowSpec or a workflow id, got {workflow!r}")
        payload: Dict[str, Any] = {"workflow_id": workflow_id, "vars": dict(vars or {})}
        if session_id is not None:
            payload["session_id"] = session_id
        result = self._effect("run_workflow", workflow_id, payload,
                              lambda n: (EffectType.START_SUBWORKFLOW, dict(payload)))
        result = result if type(result) is dict else {}
        status = result.get("status")
        if status in ("failed", "cancelled"):
            raise ChildWorkflowError(f"child run {result.get('sub_run_id')} of workflow '{workflow_id}' ended "
                                     f"{status}: {result.get('error')}", sub_run_id=result.get("sub_run_id"),
                                     status=status)
        return self._out(result.get("output"))

    @_parkable
    def effect(self, effect_type: Union[EffectType, str], payload: Optional[Dict[str, Any]] = None) -> Any:
        """Any installed effect type, with ``payload``; returns its result (``{}`` if it gave none)."""
        kind = effect_type_value(coerce_effect_type(effect_type))
        body = dict(payload or {})
        return self._out(self._effect("effect", kind, body, lambda n: (kind, dict(body))))


__all__ = ["FunctionalContext", "active_context", "digest", "pack_results", "recorded_results", "NODE", "STATE",
           "PACKED", "STEP_EFFECT", "NONDETERMINISM_EFFECT", "SUSPENDED", "DRIVER"]
