"""The TOOL_CALLS effect handler (spec §15.3): one attempt with a tool executor (:mod:`.tool_executor`).

Calls are normalised first (names, ``runtime_call_id`` = ``rtcall_<key>_<n>`` when missing, ``allowed_tools``, the
run's workspace policy on the path arguments of the default file/system tools); refused calls become error results.
``open_attachment`` calls are answered here (:mod:`.attachments`). Executing executors run one call at a time and
every result is journalled before the next call starts (see :mod:`.handlers` for why); executors that do not
execute (passthrough, approval, delegated MCP jobs) make the step wait durably for the host.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from abstractruntime import EffectOutcome, WaitReason, WaitState
from abstractruntime.errors import ValidationError
from abstractruntime.logs import get_logger
from abstractruntime.models import utc_now_iso
from abstractruntime_workspace import RunWorkspace, WorkspaceError, WorkspacePolicy, workspace_for_run

from . import attachments
from .calls import idempotency_key as _idempotency_key
from .errors import ToolExecutorError
from .llm_client import json_safe, parse_arguments
from .tool_executor import error_result, journal_for

log = get_logger("abstractruntime.abstractcore")

MISSING_RESULT = {"call_id": "", "runtime_call_id": None, "name": "", "success": False, "output": None,
                  "error": "Missing tool result"}
_WAIT_REASONS = {r.value for r in WaitReason}


def _allowed_tools(payload: Mapping[str, Any]) -> Optional[List[str]]:
    if "allowed_tools" not in payload or payload.get("allowed_tools") is None:
        return None
    raw = payload.get("allowed_tools")
    names = raw if isinstance(raw, (list, tuple, set)) else [raw]
    return sorted({str(n).strip() for n in names if isinstance(n, str) and n.strip()})


#: The path arguments of the default file and system tools, checked against the run's workspace policy.
PATH_ARGUMENTS = {
    "read_file": ("file_path",), "write_file": ("file_path",), "edit_file": ("file_path",),
    "analyze_code": ("file_path",), "list_files": ("directory_path",), "search_files": ("path",),
    "skim_files": ("paths",), "skim_folders": ("paths",), "execute_command": ("working_directory",),
}
#: Tools whose omitted path argument means "the current directory": under a workspace root, the root.
_DEFAULT_TO_ROOT = {"list_files": "directory_path", "search_files": "path", "execute_command": "working_directory"}


def _path_list(value: Any) -> Any:
    """A ``paths`` argument given as one string, split the way the skim tools split it (a JSON list, else on ``|``
    and newlines, else on commas): each path must be checked, not the string as one path."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return parsed
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "|" not in text and "\n" not in text and "," in text:
        return [p.strip() for p in text.split(",") if p.strip()]
    return [p.strip() for chunk in text.split("\n") for p in chunk.split("|") if p.strip()]


def apply_workspace(policy: Union[RunWorkspace, WorkspacePolicy], name: str,
                    arguments: Dict[str, Any]) -> Dict[str, Any]:
    """``arguments`` with the tool's path arguments resolved to absolute paths the policy allows; raises
    WorkspaceError for a refused path. Tools other than the default file/system tools are left as they are."""
    keys = PATH_ARGUMENTS.get(name)
    if not keys or not policy.active:
        return arguments
    out = dict(arguments)
    default = _DEFAULT_TO_ROOT.get(name)
    if default and policy.root is not None and out.get(default) in (None, "", "."):
        out[default] = str(policy.root)
    for key in keys:
        value = _path_list(out.get(key)) if key == "paths" else out.get(key)
        if isinstance(value, (list, tuple)):
            out[key] = [str(policy.resolve(v)) for v in value]
        elif value is not None:
            out[key] = str(policy.resolve(value))
    return out


def prepare_calls(call: Any) -> Tuple[List[Any], Dict[int, Dict[str, Any]], List[Tuple[int, Dict[str, Any]]]]:
    """``(original list, blocked results by index, [(index, normalised call)])``. Raises ValueError if
    ``tool_calls`` is not a list."""
    payload = call.effect.payload if isinstance(call.effect.payload, dict) else {}
    tool_calls = payload.get("tool_calls")
    if not isinstance(tool_calls, list):
        raise ValidationError("tool_calls requires payload.tool_calls (list)")
    key = _idempotency_key(call)
    allowed = _allowed_tools(payload)
    try:
        policy: Any = workspace_for_run(call.run)  # sealed at start: the host's policy, never the flow's
    except WorkspaceError as exc:  # a bad (or tampered) policy refuses the path tools, not the whole step
        policy = exc
    blocked: Dict[int, Dict[str, Any]] = {}
    prepared: List[Tuple[int, Dict[str, Any]]] = []
    for i, raw in enumerate(tool_calls):
        rcid = f"rtcall_{key}_{i + 1}"
        if not isinstance(raw, dict):
            blocked[i] = error_result({"runtime_call_id": rcid, "call_id": rcid},
                                      f"Invalid tool call at index {i}: expected an object")
            continue
        fn = raw.get("function") if isinstance(raw.get("function"), dict) else {}
        name = str(raw.get("name") or fn.get("name") or "").strip()
        rcid = str(raw.get("runtime_call_id") or rcid)
        call_id = str(raw.get("call_id") or raw.get("id") or rcid)
        base = {"call_id": call_id, "runtime_call_id": rcid, "name": name}
        if not name:
            blocked[i] = error_result(base, f"Invalid tool call at index {i}: missing tool name")
        elif allowed is not None and name not in allowed:
            shown = ", ".join(allowed) or "none"
            blocked[i] = error_result(base, f"Tool '{name}' is not allowed (allowed tools: {shown})")
        else:
            arguments = parse_arguments(raw.get("arguments") if "arguments" in raw else fn.get("arguments"))
            try:
                if isinstance(policy, WorkspaceError):
                    if name in PATH_ARGUMENTS:
                        raise policy
                else:
                    arguments = apply_workspace(policy, name, arguments)
            except WorkspaceError as exc:
                blocked[i] = error_result(base, f"Tool '{name}' refused: {exc}")
                continue
            prepared.append((i, {**base, "arguments": arguments}))
    return tool_calls, blocked, prepared


def normalize_result(raw: Any, call: Mapping[str, Any]) -> Dict[str, Any]:
    if not isinstance(raw, Mapping):
        return error_result(call, f"Tool executor returned {type(raw).__name__} instead of a result object")
    success = bool(raw.get("success", raw.get("error") in (None, "")))
    out = {
        "call_id": str(raw.get("call_id") or call.get("call_id") or ""),
        "runtime_call_id": call.get("runtime_call_id") or raw.get("runtime_call_id"),
        "name": str(raw.get("name") or call.get("name") or ""),
        "success": success,
        "output": json_safe(raw.get("output")),
        "error": None if success else str(raw.get("error") or "Tool failed"),
    }
    if isinstance(raw.get("meta"), Mapping):
        out["meta"] = json_safe(raw["meta"])
    return out


def _execute_journalled(executor: Any, calls: Sequence[Tuple[int, Dict[str, Any]]], journal: Any, key: str,
                        run_id: str, results: Dict[int, Dict[str, Any]]) -> None:
    """Run ``calls`` one at a time, journalling each result before the next starts."""
    for index, c in calls:
        out = executor.execute(tool_calls=[c])
        items = out.get("results") if isinstance(out, Mapping) else None
        if not isinstance(out, Mapping) or out.get("mode", "executed") != "executed" or not isinstance(items, list):
            raise ToolExecutorError("an executing tool executor returned no results")
        result = normalize_result(items[0] if items else MISSING_RESULT, c)
        if journal is not None:
            journal.put(key, c["runtime_call_id"], result, run_id=run_id)
        results[index] = result


def _approval_prompt(calls: Sequence[Mapping[str, Any]]) -> str:
    lines = [f"Approve {len(calls)} tool call(s)?"]
    for c in calls:
        args = json.dumps(c.get("arguments") or {}, ensure_ascii=False, sort_keys=True)
        lines.append(f"- {c.get('name')}({args[:500]}) [{c.get('runtime_call_id')}]")
    return "\n".join(lines)


def _runtime_owned_result(call: Any, c: Dict[str, Any]) -> Dict[str, Any]:
    """The result of a runtime-owned tool call (``open_attachment``): answered here, never by the executor."""
    try:
        output = attachments.open_attachment(getattr(call, "runtime", None), call.run, c["arguments"])
    except attachments.AttachmentError as exc:
        return error_result(c, str(exc))
    except Exception as exc:  # a failing read is a result, never a failed run
        return error_result(c, f"{type(exc).__name__}: {exc}")
    return {"call_id": c["call_id"], "runtime_call_id": c["runtime_call_id"], "name": c["name"], "success": True,
            "output": output, "error": None}


def tool_calls(call: Any, executor: Any, *, journal: Any = None, use_journal: bool = True) -> EffectOutcome:
    """Execute one TOOL_CALLS attempt with ``executor``."""
    try:
        original, blocked, prepared = prepare_calls(call)
    except ValueError as exc:
        return EffectOutcome.failed(str(exc))
    # runtime-owned calls are answered first (read-only: not journalled, no approval); the rest go to the executor
    owned = {i: _runtime_owned_result(call, c) for i, c in prepared if c["name"] == attachments.NAME}
    for_executor = [(i, c) for i, c in prepared if i not in owned]
    if executor is None and for_executor:
        return EffectOutcome.failed(
            "tool_calls has no tool executor: pass tool_executor= to the factory, attach(runtime, tools=...), or set "
            "[abstractruntime.plugin_options.abstractcore] tools")
    run = call.run
    payload = call.effect.payload
    key = _idempotency_key(call)
    if journal is None and use_journal:
        journal = journal_for(call.runtime) if getattr(call, "runtime", None) is not None else None
    results: Dict[int, Dict[str, Any]] = {**blocked, **owned}
    pre: Dict[int, Dict[str, Any]] = dict(owned)
    pending: List[Tuple[int, Dict[str, Any]]] = []
    for index, c in for_executor:
        done = journal.get(key, c["runtime_call_id"]) if journal is not None else None
        if done is not None:
            pre[index] = done
            results[index] = done
        else:
            pending.append((index, c))
    if len(pre) > len(owned):
        log.debug("tool_calls_from_journal", run_id=run.run_id, node=call.node_id, calls=len(pre) - len(owned))

    approval = hasattr(executor, "needs_approval") and hasattr(executor, "inner")
    out: Dict[str, Any]
    try:
        if approval:
            auto = [(i, c) for i, c in pending if not executor.needs_approval(c["name"])]
            if auto:
                before = set(results)
                _execute_journalled(executor.inner, auto, journal, key, run.run_id, results)
                pre.update({i: results[i] for i in set(results) - before})
            pending = [(i, c) for i, c in pending if executor.needs_approval(c["name"])]
            out = executor.execute(tool_calls=[c for _, c in pending]) if pending else {"mode": "executed"}
        elif getattr(executor, "executes", None) is True:
            _execute_journalled(executor, pending, journal, key, run.run_id, results)
            out = {"mode": "executed"}
        elif pending:
            out = executor.execute(tool_calls=[c for _, c in pending])
            if not isinstance(out, Mapping):
                return EffectOutcome.failed(f"Tool executor returned {type(out).__name__}, expected a dict")
            if out.get("mode", "executed") == "executed":
                items = out.get("results") if isinstance(out.get("results"), list) else []
                for n, (index, c) in enumerate(pending):
                    result = normalize_result(items[n] if n < len(items) else MISSING_RESULT, c)
                    if journal is not None:
                        journal.put(key, c["runtime_call_id"], result, run_id=run.run_id)
                    results[index] = result
        else:
            out = {"mode": "executed"}
    except Exception as exc:
        return EffectOutcome.failed(f"Tool executor failed: {type(exc).__name__}: {exc}")

    mode = str(out.get("mode") or "executed")
    if mode == "executed" or not pending:
        return EffectOutcome.completed({"mode": "executed",
                                        "results": [results.get(i, MISSING_RESULT) for i in range(len(original))]})

    # not executed here: wait durably for the host (passthrough, approval, delegated job)
    waiting_calls = out.get("tool_calls") if isinstance(out.get("tool_calls"), list) else [c for _, c in pending]
    reason_value = out.get("wait_reason")
    if reason_value in _WAIT_REASONS:
        reason = WaitReason(reason_value)
    else:
        reason = WaitReason.JOB if mode == "delegated" else WaitReason.EVENT
    wait_key = payload.get("wait_key") or out.get("wait_key") or f"tool_calls:{run.run_id}:{run.current_node}"
    details: Dict[str, Any] = {"mode": mode, "tool_calls": json_safe(waiting_calls)}
    if isinstance(out.get("details"), Mapping):
        details["executor"] = json_safe(out["details"])
    if blocked or pre:
        details["original_call_count"] = len(original)
        if blocked:
            details["blocked_by_index"] = {str(i): r for i, r in blocked.items()}
        if pre:
            details["pre_results_by_index"] = {str(i): r for i, r in pre.items()}
        details["tool_calls_for_evidence"] = [c for _, c in prepared]
    prompt = None
    choices = None
    allow_free_text = True
    if approval:
        details["approval"] = {"id": key, "node_id": call.node_id, "requested_at": utc_now_iso()}
        prompt = _approval_prompt(waiting_calls)
        choices = ["approve", "deny"]
        allow_free_text = False
    return EffectOutcome.waiting(WaitState(
        reason=reason, wait_key=str(wait_key),
        resume_to_node=payload.get("resume_to_node") or call.default_next_node,
        result_key=call.effect.result_key, prompt=prompt, choices=choices, allow_free_text=allow_free_text,
        details=details))


__all__ = ["tool_calls", "prepare_calls", "apply_workspace", "normalize_result", "PATH_ARGUMENTS", "MISSING_RESULT"]
