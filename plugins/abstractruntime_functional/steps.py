"""``@step``: a side-effecting function registered by a stable name, executed through the ``function_step`` effect.

Called in a workflow body, a step does not run there: its call becomes a ``function_step`` effect whose payload
names it (``module:qualname``, or ``@step(name=...)``) and carries its JSON arguments. The handler -- registered with
``side_effects=True``, so the kernel reserves the step before it runs -- finds the function by that name and calls
it. A crash after the side effect and before the commit re-runs it under the same ``call.idempotency_key``
(:func:`current_step` gives it to the function). Called anywhere else, a step is a plain function call.

Per-step retries (``@step(retries=3, backoff_s=0.5)``) are a loop inside the handler, so they hold whatever effect
policy the host sets (``set_effect_policy`` replaces a policy wholesale; a wrapper around it would be lost). The
effect policy's own attempts for ``function_step`` still apply around that loop (docs/functional.md#errors).

An ``async def`` step runs as an async effect handler: the handler returns a coroutine (the tries, with
``asyncio.sleep`` between them) that the kernel awaits through ``Runtime.awaiter`` -- under an ``AsyncRuntime`` on the
host's loop, so the steps of many runs overlap there. Called in an ``async def`` workflow, any step is awaited.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import threading
import time
import traceback
from contextvars import ContextVar
from typing import Any, Callable, Coroutine, Dict, List, Optional

from attrs import frozen

from abstractruntime.descriptors import EffectCall
from abstractruntime.errors import ValidationError
from abstractruntime.logs import get_logger
from abstractruntime.models import EffectOutcome

from .context import _ACTIVE
from .errors import NotInStepError, StepNotFoundError

log = get_logger("abstractruntime.functional")
#: the longest in-handler pause between two tries of a step (longer waits: the effect policy's durable backoff)
MAX_BACKOFF_S = 60.0


@frozen
class StepDefinition:
    """What ``@step`` registered: the function, its stable name and its retry settings."""

    name: str
    function: Callable[..., Any]
    retries: int = 0
    backoff_s: float = 0.0


@frozen
class StepInfo:
    """The step being executed (:func:`current_step`): pass ``idempotency_key`` to the outside world."""

    run_id: str
    workflow_id: str
    name: str
    call: Optional[int]
    idempotency_key: str
    attempt: int  #: the kernel's attempt of the effect (its policy's retries)
    try_number: int  #: the try within ``@step(retries=...)``, from 1


_REGISTRY: Dict[str, StepDefinition] = {}
_REGISTRY_LOCK = threading.Lock()
_CURRENT: "ContextVar[Optional[StepInfo]]" = ContextVar("abstractruntime_functional_step", default=None)


def current_step() -> StepInfo:
    """The step this code runs in (inside a ``@step`` executed by the runtime); raises NotInStepError elsewhere."""
    info = _CURRENT.get()
    if info is None:
        raise NotInStepError("current_step() is only available while the runtime executes a @step (a step called "
                             "outside a workflow is a plain call and has no idempotency key)")
    return info


def step(function: Optional[Callable[..., Any]] = None, *, name: Optional[str] = None, retries: int = 0,
         backoff_s: float = 0.0) -> Any:
    """Register a side-effecting step: ``@step`` or ``@step(name="charge", retries=3, backoff_s=0.5)``.

    ``retries`` more tries after a raise, ``backoff_s * 2**(try-1)`` seconds apart (at most 60 s each). Arguments and
    the return value must be plain JSON. Module-level functions only (the handler finds them by name). An
    ``async def`` step is awaited by the runtime (on the host's loop under an ``AsyncRuntime``)."""
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValidationError(f"@step(retries=...) must be an integer >= 0, got {retries!r}")
    if isinstance(backoff_s, bool) or not isinstance(backoff_s, (int, float)) or not 0 <= backoff_s <= MAX_BACKOFF_S:
        raise ValidationError(f"@step(backoff_s=...) must be a number of seconds from 0 to {MAX_BACKOFF_S:g}, "
                              f"got {backoff_s!r}")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        step_name = name or f"{fn.__module__}:{fn.__qualname__}"
        definition = StepDefinition(step_name, fn, retries, float(backoff_s))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = _ACTIVE.get()
            if ctx is None:
                return fn(*args, **kwargs)
            return ctx.call_step(step_name, args, kwargs, definition.retries, definition.backoff_s)

        wrapper.__abstractruntime_step__ = definition  # type: ignore[attr-defined]
        with _REGISTRY_LOCK:
            _REGISTRY[step_name] = definition  # a module imported again replaces its steps
        return wrapper

    return decorate(function) if function is not None else decorate


def registered_steps() -> Dict[str, StepDefinition]:
    """The steps registered in this process, by name."""
    return dict(_REGISTRY)


def resolve_step(name: str) -> StepDefinition:
    """The step named ``name``: registered in this process, else found by importing its module."""
    found = _REGISTRY.get(name)
    if found is not None:
        return found
    module_name, sep, qualname = name.partition(":")
    hint = ("import the module that defines it in the process that drives the run" if sep else
            "a step registered under an explicit name is found only once its module is imported")
    if sep and module_name and "<locals>" not in qualname:
        try:
            target: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise StepNotFoundError(f"@step {name!r} is not available in this process ({type(exc).__name__}: "
                                    f"{exc}); {hint}") from None
        found = _REGISTRY.get(name) or getattr(target, "__abstractruntime_step__", None)
        if isinstance(found, StepDefinition):
            return found
    raise StepNotFoundError(f"@step {name!r} is not registered in this process; {hint}")


def _failure(name: str, exc: BaseException) -> str:
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None  # from the step's own frame
    text = "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()
    return f"@step {name!r} raised {type(exc).__name__}: {exc}\n{text}"


def function_step(call: EffectCall) -> Any:
    """The ``function_step`` effect handler: call the named step with the payload's JSON arguments (an async step:
    return the coroutine that does, for the kernel to await)."""
    payload = call.effect.payload
    name = payload.get("step")
    if not isinstance(name, str) or not name:
        return EffectOutcome.failed("function_step requires payload.step (the name of a @step function)")
    try:
        definition = resolve_step(name)
    except StepNotFoundError as exc:
        return EffectOutcome.failed(str(exc))
    args, kwargs = payload.get("args") or [], payload.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return EffectOutcome.failed("function_step requires payload.args (a list) and payload.kwargs (an object)")
    retries = payload.get("retries") or 0
    backoff_s = float(payload.get("backoff_s") or 0.0)
    number = (payload.get("functional_call") or {}).get("number")
    if inspect.iscoroutinefunction(definition.function):
        return _run_async(call, definition, name, args, kwargs, int(retries), backoff_s, number)
    error = ""
    for try_number in range(1, int(retries) + 2):
        token = _CURRENT.set(_info(call, name, number, try_number))
        try:
            return EffectOutcome.completed({"value": definition.function(*args, **kwargs)})
        except Exception as exc:  # the step's fault: this try fails
            error = _failure(name, exc)
        finally:
            _CURRENT.reset(token)
        if try_number <= retries:
            delay = _retry_delay(call, name, number, try_number, backoff_s, error)
            if delay > 0:
                time.sleep(delay)
    return _failed(error, int(retries))


async def _run_async(call: EffectCall, definition: StepDefinition, name: str, args: List[Any],
                     kwargs: Dict[str, Any], retries: int, backoff_s: float, number: Optional[int]) -> EffectOutcome:
    """The tries of an ``async def`` step, awaited by the kernel (``Runtime.awaiter``)."""
    error = ""
    for try_number in range(1, retries + 2):
        token = _CURRENT.set(_info(call, name, number, try_number))
        try:
            coroutine: Coroutine[Any, Any, Any] = definition.function(*args, **kwargs)
            return EffectOutcome.completed({"value": await coroutine})
        except Exception as exc:  # the step's fault: this try fails (a CancelledError is not: it propagates)
            error = _failure(name, exc)
        finally:
            _CURRENT.reset(token)
        if try_number <= retries:
            delay = _retry_delay(call, name, number, try_number, backoff_s, error)
            if delay > 0:
                await asyncio.sleep(delay)
    return _failed(error, retries)


def _info(call: EffectCall, name: str, number: Optional[int], try_number: int) -> StepInfo:
    return StepInfo(run_id=call.run.run_id, workflow_id=call.run.workflow_id, name=name, call=number,
                    idempotency_key=call.idempotency_key, attempt=call.attempt, try_number=try_number)


def _retry_delay(call: EffectCall, name: str, number: Optional[int], try_number: int, backoff_s: float,
                 error: str) -> float:
    delay = min(backoff_s * 2 ** (try_number - 1), MAX_BACKOFF_S)
    log.warning("step_retry", run_id=call.run.run_id, step=name, call=number, try_number=try_number,
                delay_s=delay, error=error.splitlines()[0])
    return delay


def _failed(error: str, retries: int) -> EffectOutcome:
    tries = f" (after {retries + 1} tries)" if retries else ""
    return EffectOutcome.failed(error.replace("\n", f"{tries}\n", 1) if tries else error)


__all__ = ["step", "current_step", "StepInfo", "StepDefinition", "registered_steps", "resolve_step",
           "function_step"]
