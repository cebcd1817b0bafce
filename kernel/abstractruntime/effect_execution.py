"""Effect execution (:class:`EffectExecutor`, owned by the ``Runtime``): reuse a recorded outcome or execute the
effect through the ``abstractruntime_execute_effect`` hook (retries; a ``started`` reservation first for side
effects), then apply the outcome. ``EffectDispatch``, the innermost implementation, calls the registered handler."""

from __future__ import annotations

import inspect
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional

from . import codec
from .descriptors import EffectCall, EffectHandlerDescriptor
from .errors import StoreUnavailableError
from .hookspecs import hookimpl
from .ledger_rows import status_row as _status_row
from .logs import get_logger
from .models import (Effect, EffectOutcome, RunState, RunStatus, StepPlan, StepRecord, StepStatus, WaitReason,
                     WaitState)
from .paths import set_path
from .plugins import Hooks
from .policy import EffectPolicy
from .timeutil import now_utc

if TYPE_CHECKING:
    from .runtime import Runtime

log = get_logger("abstractruntime")
#: ``WaitState.details["kind"]`` of a run parked for a durable retry backoff
RETRY = "retry"


def _attempts(n: int) -> str:
    return f"{n} attempt" + ("s" if n != 1 else "")  # the reference wrote "1 attempts" (docs/compatibility.md)


class EffectDispatch:
    """The kernel's own ``abstractruntime_execute_effect``: run the handler registered for the effect type."""

    def __init__(self, handlers: Mapping[str, EffectHandlerDescriptor]) -> None:
        self._handlers = handlers

    @hookimpl(trylast=True)
    def abstractruntime_execute_effect(self, call: EffectCall) -> EffectOutcome:
        effect_type = call.effect.type_value
        desc = self._handlers.get(effect_type)
        if desc is None:
            installed = ", ".join(sorted(self._handlers)) or "(none)"
            return EffectOutcome.failed(
                f"No effect handler registered for {effect_type} (installed handlers: {installed}; "
                f"install the plugin that provides it or pass effect_handlers={{...}}, then continue the failed run "
                f"with runtime.retry_run(run_id) or `abstractruntime runs retry RUN_ID`)"
            )
        outcome = desc.handler(call)
        if not isinstance(outcome, EffectOutcome) and inspect.isawaitable(outcome):  # an async handler
            outcome = call.runtime.awaiter(outcome)
        if not isinstance(outcome, EffectOutcome):
            return EffectOutcome.failed(
                f"Effect handler for {effect_type} returned {type(outcome).__name__}, expected EffectOutcome"
            )
        return outcome

    @hookimpl(trylast=True)
    def abstractruntime_api_call(self, call: Callable[[], Any]) -> Any:
        return call()


#: ``commit(run, records, *, node_id, expected_revision, run_id, reservation)``: the runtime's commit path
CommitFn = Callable[..., None]
#: ``find_prior(run_id, idempotency_key) -> Optional[dict]``: the ledger row an earlier attempt left
FindPriorFn = Callable[[str, str], Optional[Dict[str, Any]]]


class EffectExecutor:
    """Runs a step's effect: idempotent reuse, the ``started`` reservation of side-effecting handlers, retries with
    backoff, and applying the outcome to the run. ``policy`` may be replaced (``Runtime.set_effect_policy``)."""

    def __init__(self, *, runtime: "Runtime", hooks: Hooks, handlers: Mapping[str, EffectHandlerDescriptor],
                 policy: EffectPolicy, commit: CommitFn, find_prior: FindPriorFn,
                 sleep: Callable[[float], None], inline_backoff_s: float = 1.0) -> None:
        self._runtime = runtime
        self._hooks = hooks
        self._handlers = handlers
        self.policy = policy
        self._commit = commit
        self._find_prior = find_prior
        self._sleep = sleep
        self.inline_backoff_s = inline_backoff_s  # longer backoffs park the run in a timer wait

    def run_effect(self, run: RunState, plan: StepPlan) -> List[StepRecord]:
        """Execute the plan's effect (with retries and idempotent reuse); apply the outcome to ``run``."""
        effect = plan.effect
        assert effect is not None
        node_id = plan.node_id
        codec.check_json(effect.payload, "effect.payload", run_id=run.run_id, node_id=node_id)
        key = self.policy.idempotency_key(run=run, node_id=node_id, effect=effect)
        records: List[StepRecord] = []
        prior = self._find_prior(run.run_id, key)
        if prior is not None and prior.get("status") == StepStatus.COMPLETED:
            outcome = EffectOutcome.completed(prior.get("result"))
            log.debug("effect_reused", run_id=run.run_id, node=node_id, key=key)
        else:
            outcome = self._execute_with_retries(run, plan, effect, key, prior, records)
        self._apply_outcome(run, plan, effect, outcome, records)
        return records

    def execute_effect(self, run: RunState, effect: Effect, *, node_id: str, idempotency_key: str,
                       default_next_node: Optional[str] = None) -> EffectOutcome:
        """Execute ``effect`` through the ``execute_effect`` hook without ledger rows, reservation or retries (for
        handlers that compose effects); a handler exception becomes a failed outcome."""
        call = EffectCall(run=run, effect=effect, node_id=node_id, default_next_node=default_next_node,
                          idempotency_key=idempotency_key, attempt=1, runtime=self._runtime)
        try:
            outcome = self._hooks.execute_effect(call=call)
        except Exception as exc:
            return EffectOutcome.failed(f"Effect handler raised exception: {exc}")
        return outcome if outcome is not None else EffectOutcome.failed(
            f"No outcome for effect {effect.type_value}")

    def _execute_with_retries(self, run: RunState, plan: StepPlan, effect: Effect, key: str,
                              prior: Optional[Dict[str, Any]], records: List[StepRecord]) -> EffectOutcome:
        desc = self._handlers.get(effect.type_value)
        reserve = desc is not None and desc.side_effects
        if reserve:  # never start a side effect for a step whose checkpoint could not be written
            codec.check_run(run, node_id=plan.node_id)
        max_attempts = self.policy.max_attempts(effect)
        attempt = 1
        in_doubt: Optional[StepRecord] = None
        if prior is not None and prior.get("status") == StepStatus.STARTED:
            # A crash happened between this step's reservation and its outcome: the effect may or may not have
            # run. Re-run it under the same step_id and idempotency key; never record a second start.
            in_doubt = codec.record_from_dict(prior)
            attempt = in_doubt.attempt
        elif prior is not None and prior.get("status") == StepStatus.FAILED:
            attempt = int(prior.get("attempt") or 1) + 1
            if attempt > max_attempts:
                return EffectOutcome.failed(
                    f"Effect failed after {_attempts(attempt - 1)}: {prior.get('error') or 'unknown error'}"
                )
        while True:
            if in_doubt is not None:
                started, in_doubt = in_doubt, None
            else:
                started = StepRecord.start(
                    run=run, node_id=plan.node_id, effect=effect, attempt=attempt, idempotency_key=key
                )
                if reserve:
                    self._commit(None, records + [started], node_id=plan.node_id, expected_revision=None,
                                 run_id=run.run_id, reservation=True)
                    records.clear()
                else:
                    records.append(started)
            call = EffectCall(
                run=run, effect=effect, node_id=plan.node_id, default_next_node=plan.next_node,
                idempotency_key=key, attempt=attempt, runtime=self._runtime,
            )
            try:
                outcome = self._hooks.execute_effect(call=call)
                if outcome is None:
                    outcome = EffectOutcome.failed(f"No outcome for effect {effect.type_value}")
                self._hooks.fault_point(point="effect:after-execute", run_id=run.run_id)
            except StoreUnavailableError:  # the store, not the effect: the tick stops, the step runs again
                raise
            except Exception as exc:
                outcome = EffectOutcome.failed(f"Effect handler raised exception: {exc}")
            if outcome.status == "completed":
                # After a committed reservation, a result that cannot be stored fails the step (recorded) instead of
                # leaving it in doubt forever; without one, the commit raises JsonInvariantError as usual.
                violation = codec.find_json_violation(outcome.result, "result") if reserve else None
                if violation is not None:
                    outcome = EffectOutcome.failed(
                        f"Effect handler for {effect.type_value} returned a result that is not plain JSON: "
                        f"{violation[0]}: {violation[1]}"
                    )
                else:
                    records.append(started.finish_success(outcome.result))
                    return outcome
            if outcome.status == "waiting":
                if outcome.wait is None:
                    outcome = EffectOutcome.failed(f"Effect handler for {effect.type_value} waited without a WaitState")
                else:
                    records.append(started.finish_waiting(outcome.wait))
                    return outcome
            error = outcome.error or "unknown error"
            records.append(started.finish_failure(error))
            if attempt >= max_attempts:
                return EffectOutcome.failed(f"Effect failed after {_attempts(attempt)}: {error}")
            delay = self.policy.backoff_seconds(effect=effect, attempt=attempt)
            if delay > self.inline_backoff_s:  # a durable timer: the step runs again when due (docs/effects.md)
                return EffectOutcome.waiting(WaitState(
                    reason=WaitReason.UNTIL, until=(now_utc() + timedelta(seconds=delay)).isoformat(),
                    resume_to_node=plan.node_id, prompt=f"Retrying {effect.type_value} in {delay:g} s",
                    details={"kind": RETRY, "attempt": attempt + 1, "effect_type": effect.type_value,
                             "error": error}))
            if delay > 0:
                self._sleep(delay)
            attempt += 1

    def _apply_outcome(
        self, run: RunState, plan: StepPlan, effect: Effect, outcome: EffectOutcome, records: List[StepRecord]
    ) -> None:
        if outcome.status == "failed":
            run.status = RunStatus.FAILED
            run.error = outcome.error or "unknown error"
            records.append(_status_row(run, RunStatus.FAILED.value))
        elif outcome.status == "waiting":
            run.status = RunStatus.WAITING
            run.waiting = outcome.wait
        else:
            if effect.result_key and outcome.result is not None:
                set_path(run.vars, effect.result_key, outcome.result)
            if plan.next_node:
                run.current_node = plan.next_node
            else:
                run.status = RunStatus.COMPLETED
                run.output = {"success": True, "result": outcome.result}
                records.append(_status_row(run, RunStatus.COMPLETED.value))


__all__ = ["EffectDispatch", "EffectExecutor"]
