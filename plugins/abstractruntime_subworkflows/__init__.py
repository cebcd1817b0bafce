"""Builtin plugin ``subworkflows``: the START_SUBWORKFLOW effect and automatic parent wake-up under a driver.

Children are started through ``Runtime.workflow_registry`` with ``parent_run_id`` set (``list_children`` finds
them). Sync children are ticked inside the effect; async children are left to be driven. When a child reaches a
terminal status and its parent waits for it (``wait_key == "subworkflow:<child_run_id>"``), the parent is resumed
with ``{sub_run_id, output}`` -- **when a driver drives the runtime** (the scheduler, the PostgreSQL worker:
``abstractruntime_pluginkit.is_driven``) or ``[abstractruntime.plugin_options.subworkflows] drive_parents = true``.
A bare ``Runtime`` leaves the parent waiting for its host, as 0.4.2 does (``resume`` or
``Scheduler.resume_subworkflow_parent``); a parent the host ticks after its child finished resumes then
(``abstractruntime_poll_wait``), which is also how a driver finds the parents whose wake-up it missed.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from attrs import frozen

from abstractruntime import EffectHandlerDescriptor, EffectType, RunState, RunStatus, WaitReason, WaitState, hookimpl
from abstractruntime.errors import ConcurrentModificationError, RunNotWaitingError, WaitKeyMismatchError
from abstractruntime.logs import get_logger
from abstractruntime_pluginkit import is_driven, plugin_options, spec_for_run
from abstractruntime_pluginkit.lazy import lazy_exports, lazy_function

# .start (the run queries, the compat protocols) is imported on the first subworkflow, not by every runtime (issue 23)
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(["start_subworkflow", "wrap_child_result"], ".start"))

#: a child's node traces (include_traces) come from the observation plugin's runtime method
abstractruntime_requires = ("observation",)

log = get_logger("abstractruntime.subworkflows")


@frozen
class SubworkflowsOptions:
    """``[abstractruntime.plugin_options.subworkflows]``: ``drive_parents`` -- resume (and tick) the waiting parent of
    a finished child inside the child's commit even without a driver (default: only under a driver)."""

    drive_parents: bool = False


@hookimpl
def abstractruntime_runtime_created(runtime: Any) -> None:
    plugin_options(runtime, "subworkflows", SubworkflowsOptions)


@hookimpl
def abstractruntime_register_effect_handlers() -> List[EffectHandlerDescriptor]:
    return [EffectHandlerDescriptor(EffectType.START_SUBWORKFLOW,
                                    lazy_function(__name__, ".start", "start_subworkflow"), "Start a child workflow")]


@hookimpl
def abstractruntime_prepare_resume_payload(run: RunState, wait: WaitState, payload: Dict[str, Any]) -> Optional[dict]:
    """A parent waiting with ``wrap_as_tool_result`` receives its child's result as a tool-result envelope."""
    details = wait.details or {}
    if wait.reason is not WaitReason.SUBWORKFLOW or not details.get("wrap_as_tool_result"):
        return None
    if isinstance(payload, dict) and "mode" in payload and "results" in payload:
        return None  # already an envelope
    from .start import wrap_child_result

    return wrap_child_result(
        output=(payload or {}).get("output"),
        sub_run_id=(payload or {}).get("sub_run_id") or details.get("sub_run_id"),
        call_id=details.get("call_id") or "subworkflow",
        tool_name=details.get("tool_name") or "start_subworkflow",
        failed_error=(payload or {}).get("error") if (payload or {}).get("status") in ("failed", "cancelled") else None,
    )


def _child_result(runtime: Any, parent: RunState) -> Optional[Dict[str, Any]]:
    """``{sub_run_id, output}`` (+ status/error) if the child this parent waits for has finished, else None."""
    wait = parent.waiting
    if wait is None or wait.reason is not WaitReason.SUBWORKFLOW:
        return None
    child_id = (wait.details or {}).get("sub_run_id")
    child = runtime.run_store.load(child_id) if isinstance(child_id, str) and child_id else None
    if child is None or not child.status.is_terminal:
        return None
    payload: Dict[str, Any] = {"sub_run_id": child.run_id, "output": child.output}
    if child.status is not RunStatus.COMPLETED:
        payload.update(status=child.status.value, error=child.error)
    if (wait.details or {}).get("include_traces"):  # asked for by the start (the agent node): as for sync children
        payload["node_traces"] = runtime.get_node_traces(child.run_id)
    return payload


@hookimpl
def abstractruntime_poll_wait(runtime: Any, run: RunState) -> Optional[Dict[str, Any]]:
    """A parent ticked while its child is already finished (wake-up missed: paused, crash, ...) resumes now."""
    return _child_result(runtime, run)


@hookimpl
def abstractruntime_run_status_changed(run: RunState, runtime: Any) -> None:
    """Wake the parent that waits for this child, once the child is finished -- under a driver (or with
    ``drive_parents``); a bare runtime leaves that transition to its host, as 0.4.2 does."""
    if not run.parent_run_id or not run.status.is_terminal:
        return
    if not (is_driven(runtime) or plugin_options(runtime, "subworkflows", SubworkflowsOptions).drive_parents):
        return
    parent = runtime.run_store.load(run.parent_run_id)
    wait = parent.waiting if parent is not None else None
    if (parent is None or parent.status is not RunStatus.WAITING or parent.is_paused or wait is None
            or wait.reason is not WaitReason.SUBWORKFLOW or wait.wait_key != f"subworkflow:{run.run_id}"):
        return
    registry = runtime.workflow_registry
    spec = spec_for_run(registry, parent, required=False)
    if spec is None:
        log.warning("subworkflow_parent_not_resumed", run_id=parent.run_id, child_run_id=run.run_id,
                    error=f"workflow '{parent.workflow_id}' is not in the runtime's workflow_registry")
        return
    payload = _child_result(runtime, parent)
    if payload is None:
        return
    try:
        runtime.resume(workflow=spec, run_id=parent.run_id, wait_key=wait.wait_key, payload=payload)
    except (RunNotWaitingError, WaitKeyMismatchError, ConcurrentModificationError):
        pass  # someone else woke it first
