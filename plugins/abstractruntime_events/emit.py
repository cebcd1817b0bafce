"""EMIT_EVENT: payloads, envelope and result shape of the reference (§4), with indexed listener lookup."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from abstractruntime import EffectCall, EffectOutcome, RunState, RunStatus, WaitReason
from abstractruntime_pluginkit.event_keys import build_event_wait_key
from abstractruntime.errors import ConfigurationError
from abstractruntime_pluginkit import spec_for_run
from abstractruntime.models import utc_now_iso
from abstractruntime_pluginkit.queries import answers_run_queries, has_event_index

MAX_LISTENERS = 10_000


class NoWorkflowRegistryError(ConfigurationError, LookupError):
    """Listeners were found but the runtime has no ``workflow_registry`` to resume them with."""


def _queryable(run_store: Any) -> bool:
    """Can listeners be found: an event index, or run queries."""
    return has_event_index(run_store) or answers_run_queries(run_store)


def _non_blank(value: Any) -> Optional[str]:
    return value.strip() if isinstance(value, str) and value.strip() else None


def waiting_for(run_store: Any, wait_key: str, limit: int = MAX_LISTENERS) -> List[RunState]:
    """Unpaused runs waiting for ``wait_key`` (through the store's event index when it has one)."""
    if has_event_index(run_store):
        runs = run_store.list_waiting_for_event(wait_key=wait_key, limit=limit)
    else:
        runs = [r for r in run_store.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.EVENT, limit=limit)
                if r.waiting is not None and r.waiting.wait_key == wait_key]
    return [r for r in runs if r.status is RunStatus.WAITING and not r.is_paused]


def deliver_event(
    runtime: Any,
    *,
    wait_key: str,
    envelope: Dict[str, Any],
    wildcard_key: Optional[str] = None,
    max_steps: int = 0,
    exclude_run_id: Optional[str] = None,
) -> Dict[str, Any]:
    """Resume every run waiting for ``wait_key`` (or ``wildcard_key``, the scope's ``*`` listeners) with
    ``envelope``."""
    listeners: Dict[str, RunState] = {}
    for key in (wait_key, wildcard_key) if wildcard_key else (wait_key,):
        for run in waiting_for(runtime.run_store, key):
            if run.run_id != exclude_run_id:
                listeners.setdefault(run.run_id, run)
    delivered_to: List[str] = []
    resumed: List[Dict[str, Any]] = []
    if listeners and runtime.workflow_registry is None:
        raise NoWorkflowRegistryError(
            "emit_event found listeners but the runtime has no workflow_registry to resume them with; "
            "pass workflow_registry=WorkflowRegistry() with their workflows registered"
        )
    for run_id, run in listeners.items():
        spec = spec_for_run(runtime.workflow_registry, run, required=False)
        if spec is None:
            resumed.append({"run_id": run_id, "status": "skipped", "error": "workflow_not_registered"})
            continue
        try:
            state = runtime.resume(workflow=spec, run_id=run_id, wait_key=run.waiting.wait_key,
                                   payload=envelope, max_steps=max_steps)
        except Exception as exc:  # one listener's failure must not stop delivery to the others
            resumed.append({"run_id": run_id, "status": "error", "error": f"{type(exc).__name__}: {exc}"})
            continue
        delivered_to.append(run_id)
        resumed.append({"run_id": run_id, "status": state.status.value})
    return {"delivered": len(delivered_to), "delivered_to": delivered_to, "resumed": resumed}


def _available_listeners(run_store: Any, prefix: str) -> List[str]:
    names: List[str] = []
    if not _queryable(run_store):
        return names
    runs = run_store.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.EVENT, limit=MAX_LISTENERS)
    for run in runs:
        key = run.waiting.wait_key if run.waiting else None
        if key and key.startswith(prefix) and not run.is_paused:
            name = key[len(prefix):]
            if name not in names:
                names.append(name)
        if len(names) >= 15:
            break
    return names


def emit_event(call: EffectCall) -> EffectOutcome:
    payload = call.effect.payload
    run = call.run
    name = _non_blank(payload.get("name")) or _non_blank(payload.get("event_name"))
    if name is None:
        return EffectOutcome.failed("emit_event requires payload.name")
    scope = (_non_blank(payload.get("scope")) or "session").lower()
    session_id = _non_blank(payload.get("session_id")) or run.session_id or run.run_id
    try:
        wait_key = build_event_wait_key(scope=scope, name=name, session_id=session_id,
                                        workflow_id=run.workflow_id, run_id=run.run_id)
        wildcard_key = build_event_wait_key(scope=scope, name="*", session_id=session_id,
                                            workflow_id=run.workflow_id, run_id=run.run_id)
    except ValueError as exc:
        return EffectOutcome.failed(f"emit_event invalid payload: {exc}")
    inner = payload.get("payload")
    if inner is None:
        inner = {}
    elif not isinstance(inner, dict):
        inner = {"value": inner}
    envelope = {
        "event_id": _non_blank(payload.get("event_id")) or call.idempotency_key,
        "name": name,
        "scope": scope,
        "session_id": session_id if scope == "session" else run.session_id,
        "payload": inner,
        "emitted_at": utc_now_iso(),
        "emitter": {"run_id": run.run_id, "workflow_id": run.workflow_id, "node_id": call.node_id},
    }
    try:
        max_steps = int(payload.get("max_steps") or 0)
    except (TypeError, ValueError):
        return EffectOutcome.failed("emit_event invalid payload: max_steps must be an integer")
    runtime = call.runtime
    if not _queryable(runtime.run_store):
        return EffectOutcome.failed("emit_event requires a queryable run store (list_runs / list_waiting_for_event)")
    try:
        delivery = deliver_event(runtime, wait_key=wait_key, wildcard_key=wildcard_key, envelope=envelope,
                                 max_steps=max_steps, exclude_run_id=run.run_id)
    except LookupError as exc:
        return EffectOutcome.failed(str(exc))
    result: Dict[str, Any] = {"wait_key": wait_key, "name": name, "scope": scope, **delivery}
    if not delivery["delivered"]:
        available = _available_listeners(runtime.run_store, wildcard_key[:-1])  # "evt:{scope}:{scope_id}:"
        if available:
            result["available_listeners_in_session"] = available
    return EffectOutcome.completed(result)
