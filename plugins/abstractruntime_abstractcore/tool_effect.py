"""The TOOL_CALLS effect handler (spec §15.3): one attempt with a tool executor (:mod:`.tool_executor`).

Calls are normalised first (names, ``runtime_call_id`` = ``rtcall_<key>_<n>`` when missing, ``allowed_tools``, the
run's workspace policy on the path arguments of the default file/system tools); refused calls become error results.
``open_attachment`` calls are answered here (:mod:`.attachments`). Executing executors run one call at a time and
every result is journalled before the next call starts (see :mod:`.handlers` for why); executors that do not
execute (passthrough, approval, delegated MCP jobs) make the step wait durably for the host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from abstractruntime import EffectOutcome, WaitReason, WaitState
from abstractruntime.errors import ValidationError
from abstractruntime.logs import get_logger
from abstractruntime.models import utc_now_iso
from abstractruntime_workspace import RunWorkspace, WorkspaceError, WorkspacePolicy, workspace_for_run

from . import attachment_tools, attachments
from .calls import idempotency_key as _idempotency_key
from .errors import ToolExecutorError
from .llm_client import json_safe, parse_arguments
from .tool_arguments import split_path_argument
from .tool_executor import error_result, journal_for
from .tool_postprocess import file_argument, post_process_read_file, queue_pending_media, read_file_from_attachment
from .workspace_scoped_tools import FILE_TOOLS, copy_path_aliases, mount_names

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


def _mounted(policy: Any, value: Any) -> Any:
    """A relative ``<mount>/<rest>`` path of a ``workspace_or_allowed`` run -> the allowed directory's path (the
    reference's virtual mount names); every layer of the policy still checks the result."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    while text.startswith("@"):
        text = text[1:]
    layers = [layer for layer in getattr(policy, "layers", (policy,)) if getattr(layer, "root", None) is not None]
    if not layers or text.startswith(("/", "~")):
        return text
    inner = layers[-1]
    parts = Path(text).parts
    if inner.mode == "workspace_or_allowed" and len(parts) >= 2:
        mounts = mount_names(inner.root, inner.allowed)
        if parts[0] in mounts:
            return str(Path(mounts[parts[0]]).joinpath(*parts[1:]))
    return text


def apply_workspace(policy: Union[RunWorkspace, WorkspacePolicy], name: str,
                    arguments: Dict[str, Any]) -> Dict[str, Any]:
    """``arguments`` with the tool's path arguments resolved to absolute paths the policy allows; raises
    WorkspaceError for a refused path. Tools other than the default file/system tools are left as they are."""
    keys = PATH_ARGUMENTS.get(name)
    if not keys or not policy.active:
        return arguments
    out = copy_path_aliases(name, arguments)
    default = _DEFAULT_TO_ROOT.get(name)
    if default and policy.root is not None and out.get(default) in (None, "", "."):
        out[default] = str(policy.root)
    if name in FILE_TOOLS and not str(out.get("file_path") or "").strip():
        raise WorkspaceError(f"{name} requires file_path")
    for key in keys:
        value = split_path_argument(out.get(key)) if key == "paths" else out.get(key)
        if isinstance(value, (list, tuple)):
            out[key] = [str(policy.resolve(_mounted(policy, v))) for v in value]
        elif value is not None:
            out[key] = str(policy.resolve(_mounted(policy, value)))
    return out


def _blocked(call: Mapping[str, Any], error: str) -> Dict[str, Any]:
    return error_result(call, error)


def prepare_calls(call: Any) -> Tuple[List[Any], Dict[int, Dict[str, Any]], List[Tuple[int, Dict[str, Any]]]]:
    """``(original list, blocked results by index, [(index, normalised call)])``. Raises ValueError if
    ``tool_calls`` is not a list."""
    plan = plan_calls(call)
    return plan.original, plan.blocked, plan.prepared


class Plan:
    """The planned calls of one TOOL_CALLS effect (integration-surface §3.1 step 2)."""

    def __init__(self, original: List[Any]) -> None:
        self.original = original
        self.blocked: Dict[int, Dict[str, Any]] = {}
        self.prepared: List[Tuple[int, Dict[str, Any]]] = []
        self.evidence: List[Dict[str, Any]] = []
        self.workspace_errors: Dict[int, Tuple[Dict[str, Any], str]] = {}
        self.root: Optional[Path] = None


def plan_calls(call: Any) -> Plan:
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
    plan = Plan(tool_calls)
    plan.root = None if isinstance(policy, WorkspaceError) else policy.root
    for i, raw in enumerate(tool_calls):
        rcid = f"rtcall_{key}_{i + 1}"
        if not isinstance(raw, dict):
            plan.blocked[i] = {"call_id": "", "runtime_call_id": None, "name": "", "success": False, "output": None,
                               "error": "Invalid tool call (expected an object)"}
            plan.evidence.append({"call_id": "", "runtime_call_id": None, "name": "", "arguments": {}})
            continue
        fn = raw.get("function") if isinstance(raw.get("function"), dict) else {}
        name = str(raw.get("name") or fn.get("name") or "").strip()
        rcid = str(raw.get("runtime_call_id") or rcid)
        call_id = str(raw.get("call_id") or raw.get("id") or rcid)
        base = {"call_id": call_id, "runtime_call_id": rcid, "name": name}
        arguments = parse_arguments(raw.get("arguments") if "arguments" in raw else fn.get("arguments"))
        if not name:
            plan.blocked[i] = _blocked(base, "Tool call missing a valid name")
        elif allowed is not None and name not in allowed:
            plan.blocked[i] = _blocked(base, f"Tool '{name}' is not allowed for this node")
            arguments = {}  # a refused call's arguments are not handed out (evidence, wait payloads)
        elif name != attachments.NAME:
            try:
                if isinstance(policy, WorkspaceError):
                    if name in PATH_ARGUMENTS:
                        raise policy
                else:
                    arguments = apply_workspace(policy, name, arguments)
            except WorkspaceError as exc:
                plan.blocked[i] = _blocked(base, f"Tool '{name}' refused: {exc}")
                plan.workspace_errors[i] = ({**base, "arguments": arguments}, str(exc))
        plan.evidence.append({**base, "arguments": arguments})
        if i not in plan.blocked:
            plan.prepared.append((i, {**base, "arguments": arguments}))
    return plan


def normalize_result(raw: Any, call: Mapping[str, Any]) -> Dict[str, Any]:
    if not isinstance(raw, Mapping):
        return error_result(call, "Invalid tool result")
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


DELEGATED_MID_BATCH = "ToolExecutor returned delegated mode during executed TOOL_CALLS batch"


def _execute_journalled(executor: Any, calls: Sequence[Tuple[int, Dict[str, Any]]], journal: Any, key: str,
                        run_id: str, results: Dict[int, Dict[str, Any]]) -> None:
    """Run ``calls`` one at a time, journalling each result before the next starts."""
    for index, c in calls:
        out = executor.execute(tool_calls=[c])
        if not isinstance(out, Mapping):
            raise ToolExecutorError("ToolExecutor returned invalid results")
        if str(out.get("mode") or "executed") != "executed":
            raise ToolExecutorError(DELEGATED_MID_BATCH)
        items = out.get("results")
        if not isinstance(items, list):
            raise ToolExecutorError("ToolExecutor returned invalid results")
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


def _runtime_owned_result(call: Any, c: Dict[str, Any], store: Any = None) -> Dict[str, Any]:
    """The result of a runtime-owned tool call (``open_attachment``): answered here, never by the executor. Media
    it returns are queued for the next LLM call."""
    try:
        ok, output, error = attachments.open_for_run(getattr(call, "runtime", None), call.run, c["arguments"], store)
    except Exception as exc:  # a failing read is a result, never a failed run
        return error_result(c, f"{type(exc).__name__}: {exc}")
    if ok:
        queue_pending_media(call.run, output.get("media"))
    return {"call_id": c["call_id"], "runtime_call_id": c["runtime_call_id"], "name": c["name"], "success": ok,
            "output": json_safe(output), "error": None if ok else (error or "")}


def _probe_delegating(executor: Any) -> bool:
    """Is a host executor delegating? Ours say so (``executes``); another is asked once per effect with an empty
    batch, as the reference does: a non-empty mode other than ``executed`` means delegating."""
    known = getattr(executor, "executes", None)
    if isinstance(known, bool):
        return not known
    try:
        out = executor.execute(tool_calls=[])
    except Exception:
        return False
    mode = str(out.get("mode") or "").strip() if isinstance(out, Mapping) else ""
    return bool(mode) and mode != "executed"


def _workspace_fallbacks(call: Any, plan: Plan, store: Any) -> None:
    """A ``read_file`` the workspace refused is answered from a session attachment of that handle, a refused
    ``list_files`` / ``skim_folders`` / ``skim_files`` / ``search_files`` from the session's attachments
    (:mod:`.attachment_tools`; integration-surface §4.4). No path of the call reaches the file system."""
    if store is None or not plan.workspace_errors:
        return
    runtime = getattr(call, "runtime", None)
    session_id = attachments.session_id_for(runtime, call.run)
    if not session_id:
        return
    for index, (c, _error) in list(plan.workspace_errors.items()):
        if c["name"] in attachment_tools.NAMES:
            answer = attachment_tools.stand_in(store, session_id, c["name"], c.get("arguments") or {})
            if answer is not None:
                queue_pending_media(call.run, answer.pop("media", None))
                plan.blocked[index] = {"call_id": c["call_id"], "runtime_call_id": c["runtime_call_id"],
                                       "name": c["name"], **answer}
            continue
        requested = file_argument(c.get("arguments")) if c["name"] == "read_file" else None
        if requested is None:
            continue
        answer = read_file_from_attachment(runtime, call.run, store, requested, c.get("arguments") or {})
        if answer is None or answer["not_found"]:
            continue
        result = {"call_id": c["call_id"], "runtime_call_id": c["runtime_call_id"], "name": c["name"],
                  "success": answer["ok"], "output": answer["output"], "error": answer["error"]}
        plan.blocked[index] = result


def tool_calls(call: Any, executor: Any, *, journal: Any = None, use_journal: bool = True,
               artifact_store: Any = None, run_store: Any = None) -> EffectOutcome:
    """Execute one TOOL_CALLS attempt with ``executor``."""
    try:
        plan = plan_calls(call)
    except ValueError as exc:
        return EffectOutcome.failed(str(exc))
    runtime = getattr(call, "runtime", None)
    store = artifact_store if artifact_store is not None else attachments.artifact_store_of(runtime)
    if run_store is None:
        run_store = getattr(runtime, "run_store", None)
    _workspace_fallbacks(call, plan, store)
    original, blocked, prepared = plan.original, plan.blocked, plan.prepared
    owned_idx = {i for i, c in prepared if c["name"] == attachments.NAME}
    for_executor = [(i, c) for i, c in prepared if i not in owned_idx]
    if executor is None and for_executor:
        return EffectOutcome.failed(
            "tool_calls has no tool executor: pass tool_executor= to the factory, attach(runtime, tools=...), or set "
            "[abstractruntime.plugin_options.abstractcore] tools")
    run = call.run
    payload = call.effect.payload
    key = _idempotency_key(call)
    if journal is None and use_journal:
        journal = journal_for(runtime) if runtime is not None and hasattr(runtime, "stash") else None
    results: Dict[int, Dict[str, Any]] = dict(blocked)
    pre: Dict[int, Dict[str, Any]] = {}
    pending: List[Tuple[int, Dict[str, Any]]] = []
    for index, c in for_executor:
        done = journal.get(key, c["runtime_call_id"]) if journal is not None else None
        if done is not None:
            pre[index] = done
            results[index] = done
        else:
            pending.append((index, c))
    if pre:
        log.debug("tool_calls_from_journal", run_id=run.run_id, node=call.node_id, calls=len(pre))

    def run_owned() -> None:
        for i, c in prepared:
            if i in owned_idx:
                results[i] = pre[i] = _runtime_owned_result(call, c, store)

    approval = hasattr(executor, "needs_approval") and hasattr(executor, "inner")
    out: Dict[str, Any] = {"mode": "executed"}
    try:
        if approval:
            run_owned()
            auto = [(i, c) for i, c in pending if not executor.needs_approval(c["name"])]
            if auto:
                before = set(results)
                _execute_journalled(executor.inner, auto, journal, key, run.run_id, results)
                pre.update({i: results[i] for i in set(results) - before})
            pending = [(i, c) for i, c in pending if executor.needs_approval(c["name"])]
            out = executor.execute(tool_calls=[c for _, c in pending]) if pending else {"mode": "executed"}
        elif pending and _probe_delegating(executor):
            run_owned()
            out = executor.execute(tool_calls=[c for _, c in pending])
            if not isinstance(out, Mapping):
                return EffectOutcome.failed(f"Tool executor returned {type(out).__name__}, expected a dict")
            if str(out.get("mode") or "executed") == "executed":
                items = out.get("results") if isinstance(out.get("results"), list) else []
                for n, (index, c) in enumerate(pending):
                    result = normalize_result(items[n] if n < len(items) else MISSING_RESULT, c)
                    if journal is not None:
                        journal.put(key, c["runtime_call_id"], result, run_id=run.run_id)
                    results[index] = result
        else:  # executing: in call order, one journalled call at a time; runtime-owned calls between them
            waiting = dict(pending)
            for i, c in prepared:
                if i in owned_idx:
                    results[i] = _runtime_owned_result(call, c, store)
                elif i in waiting:
                    _execute_journalled(executor, [(i, c)], journal, key, run.run_id, results)
    except ToolExecutorError as exc:
        return EffectOutcome.failed(str(exc))
    except Exception as exc:
        return EffectOutcome.failed(f"Tool executor failed: {type(exc).__name__}: {exc}")

    mode = str(out.get("mode") or "executed")
    if mode == "executed" or not pending:
        final = [results.get(i, MISSING_RESULT) for i in range(len(original))]
        for i, c in prepared:
            if c["name"] == "read_file" and i not in owned_idx:
                final[i] = post_process_read_file(runtime, run, store=store, run_store=run_store,
                                                  workspace_root=plan.root, call=c, result=final[i])
        return EffectOutcome.completed({"mode": "executed", "results": final})

    # not executed here: wait durably for the host (passthrough, approval, delegated job)
    waiting_calls = out.get("tool_calls") if isinstance(out.get("tool_calls"), list) else [c for _, c in pending]
    reason_value = out.get("wait_reason")
    if reason_value in _WAIT_REASONS:
        reason = WaitReason(reason_value)
    elif reason_value is not None and str(reason_value).strip():
        reason = WaitReason.EVENT
    else:
        reason = WaitReason.JOB if mode.strip().lower() == "delegated" else WaitReason.EVENT
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
        details["tool_calls_for_evidence"] = json_safe(plan.evidence)
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
