"""START_SUBWORKFLOW (reference §8), idempotent across a crash-and-retry of the parent's step."""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from abstractruntime import EffectCall, EffectOutcome, RunStatus, WaitReason, WaitState
from abstractruntime.errors import CorruptStoreError, StoreError
from abstractruntime_pluginkit.queries import answers_run_queries

WORKSPACE_KEYS = ("workspace_root", "workspace_access_mode", "workspace_allowed_paths", "workspace_ignored_paths")
SYNC_MAX_STEPS = 100


def _non_blank(value: Any) -> Optional[str]:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _answer(output: Any) -> str:
    if isinstance(output, dict) and isinstance(output.get("answer"), str):
        return output["answer"]
    if isinstance(output, str):
        return output
    return json.dumps(output, ensure_ascii=False, default=str)


def wrap_child_result(
    *, output: Any, sub_run_id: Optional[str], call_id: str, tool_name: str, failed_error: Optional[str] = None
) -> Dict[str, Any]:
    """The tool-result envelope for a finished child (reference §3.5 / §8 ``wrap_as_tool_result``)."""
    if failed_error is not None or (isinstance(output, dict) and output.get("success") is False):
        error = failed_error or (output or {}).get("error") or "Subworkflow failed"
        result = {"call_id": call_id, "name": tool_name, "success": False, "output": None, "error": error}
    else:
        answer = _answer(output)
        out: Dict[str, Any] = {"rendered": answer, "answer": answer, "sub_run_id": sub_run_id}
        report = output.get("report") if isinstance(output, dict) else None
        if isinstance(report, str) and len(report) <= 4000:
            out["report"] = report
        result = {"call_id": call_id, "name": tool_name, "success": True, "output": out, "error": None}
    return {"mode": "executed", "results": [result]}


def _existing_child(runtime: Any, parent_run_id: str, marker: str) -> Optional[str]:
    """The child this very step started before a crash (same idempotency key), if any."""
    if not answers_run_queries(runtime.run_store):
        return None
    for child in runtime.run_store.list_children(parent_run_id=parent_run_id):
        runtime_ns = child.vars.get("_runtime") if isinstance(child.vars, dict) else None
        if isinstance(runtime_ns, dict) and runtime_ns.get("started_by_step") == marker:
            return child.run_id
    return None


def start_subworkflow(call: EffectCall) -> EffectOutcome:
    payload = call.effect.payload
    parent = call.run
    runtime = call.runtime
    wrap = bool(payload.get("wrap_as_tool_result"))
    tool_name = _non_blank(payload.get("tool_name")) or _non_blank(payload.get("toolName")) or "start_subworkflow"
    call_id = _non_blank(payload.get("call_id")) or _non_blank(payload.get("callId")) or "subworkflow"

    def fail(message: str) -> EffectOutcome:
        if wrap:
            return EffectOutcome.completed({"mode": "executed", "results": [
                {"call_id": call_id, "name": tool_name, "success": False, "output": None, "error": message}]})
        return EffectOutcome.failed(message)

    workflow_id = _non_blank(payload.get("workflow_id"))
    if workflow_id is None:
        return fail("start_subworkflow requires payload.workflow_id")
    registry = runtime.workflow_registry
    if registry is None:
        return fail("start_subworkflow requires a workflow_registry. Pass workflow_registry=WorkflowRegistry() "
                    "with the child workflow registered to the Runtime.")
    spec = registry.get(workflow_id)
    if spec is None:
        return fail(f"Workflow '{workflow_id}' not found in registry")

    child_vars = dict(payload["vars"]) if isinstance(payload.get("vars"), dict) else {}
    for key in WORKSPACE_KEYS:
        value = parent.vars.get(key)
        if key not in child_vars and value is not None and not (isinstance(value, str) and not value.strip()):
            child_vars[key] = value
    child_runtime_ns = dict(child_vars.get("_runtime") or {}) if isinstance(child_vars.get("_runtime"), dict) else {}
    child_runtime_ns["started_by_step"] = call.idempotency_key
    child_vars["_runtime"] = child_runtime_ns
    session_id = _non_blank(payload.get("session_id")) or _non_blank(payload.get("sessionId")) or parent.session_id

    child_id = _existing_child(runtime, parent.run_id, call.idempotency_key)
    retried = child_id is not None
    if child_id is None:
        child_id = runtime.start(workflow=spec, vars=child_vars, actor_id=parent.actor_id, session_id=session_id,
                                 parent_run_id=parent.run_id)
    include_traces = bool(payload.get("include_traces"))
    resume_to = _non_blank(payload.get("resume_to_node")) or call.default_next_node
    wait_key = f"subworkflow:{child_id}"
    wrap_details = {"wrap_as_tool_result": True, "tool_name": tool_name, "call_id": call_id} if wrap else {}

    def wait_for_child() -> EffectOutcome:
        """Wait for a child someone else drives (or will): its end -- or a poll (poll_wait) -- wakes the parent."""
        return EffectOutcome.waiting(WaitState(
            reason=WaitReason.SUBWORKFLOW, wait_key=wait_key, resume_to_node=resume_to,
            result_key=call.effect.result_key,
            details={"sub_run_id": child_id, "sub_workflow_id": workflow_id, "include_traces": include_traces,
                     "sub_waiting": None, **wrap_details},
        ))

    if payload.get("async"):
        if payload.get("wait"):
            return EffectOutcome.waiting(WaitState(
                reason=WaitReason.SUBWORKFLOW, wait_key=wait_key, resume_to_node=resume_to,
                result_key=call.effect.result_key,
                details={"sub_run_id": child_id, "sub_workflow_id": workflow_id, "async": True,
                         "include_traces": include_traces, **wrap_details},
            ))
        if wrap:
            return EffectOutcome.completed({"mode": "executed", "results": [{
                "call_id": call_id, "name": tool_name, "success": True, "error": None,
                "output": {"rendered": f"Started subworkflow {workflow_id}", "sub_run_id": child_id, "async": True},
            }]})
        return EffectOutcome.completed({"sub_run_id": child_id, "async": True})

    first_step = 0  # the child's step count before the inline tick
    if retried:
        existing = runtime.run_store.load(child_id)
        first_step = existing.step if existing is not None else 0
        if existing is not None and existing.status is RunStatus.RUNNING:
            # This step is being retried (a crash, or another worker took the parent over) and its child is
            # RUNNING: it may be driven right now by another worker. Never drive it a second time inline: wait
            # for it; the parent is woken when the child finishes (run_status_changed / poll_wait).
            return wait_for_child()
    try:
        state = runtime.tick(workflow=spec, run_id=child_id, max_steps=SYNC_MAX_STEPS)
    except StoreError as exc:
        if isinstance(exc, CorruptStoreError):
            return EffectOutcome.failed(f"Subworkflow '{workflow_id}' failed: {exc}")
        # The store, not the child (a database restart): the child is stored and driven by whoever claims it;
        # wait for it like a retried step does -- its end (or poll_wait) wakes the parent.
        return wait_for_child()
    except Exception as exc:
        return EffectOutcome.failed(f"Subworkflow '{workflow_id}' failed: {exc}")
    if state.status is RunStatus.COMPLETED:
        if wrap:
            return EffectOutcome.completed(wrap_child_result(output=state.output, sub_run_id=child_id,
                                                             call_id=call_id, tool_name=tool_name))
        result: Dict[str, Any] = {"sub_run_id": child_id, "output": state.output}
        if include_traces:
            result["node_traces"] = runtime.get_node_traces(child_id)
        return EffectOutcome.completed(result)
    if state.status is RunStatus.FAILED:
        return fail(f"Subworkflow '{workflow_id}' failed: {state.error}")
    if state.status is RunStatus.WAITING:
        sub_wait = state.waiting
        return EffectOutcome.waiting(WaitState(
            reason=WaitReason.SUBWORKFLOW, wait_key=wait_key, resume_to_node=resume_to,
            result_key=call.effect.result_key,
            details={"sub_run_id": child_id, "sub_workflow_id": workflow_id, "include_traces": include_traces,
                     "sub_waiting": {"reason": sub_wait.reason.value if sub_wait else None,
                                     "wait_key": sub_wait.wait_key if sub_wait else None}, **wrap_details},
        ))
    if state.status is RunStatus.RUNNING and state.step - first_step < SYNC_MAX_STEPS:
        # The tick stopped before its steps ran out: another process drives the child (it holds its lease or its
        # run lock, or committed first). Wait for the child as a retried step does: its end wakes the parent.
        return wait_for_child()
    return EffectOutcome.failed(f"Unexpected subworkflow status: {state.status.value}")  # after 100 steps (0.4.2)
