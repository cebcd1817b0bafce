"""The LLM_CALL and TOOL_CALLS effect handlers (spec §15.2 / §15.3), the tool-wait resume merge and approvals.

Durability of TOOL_CALLS
------------------------
The handlers are registered with ``side_effects=True``: the kernel commits a ``started`` reservation before a
handler runs and, after a crash, re-executes the in-doubt step under the *same* idempotency key. To keep a tool
that already ran from running again, every completed tool result is written to a journal keyed by
``(idempotency key, runtime_call_id)`` *before* the next call starts and before the handler returns
(:mod:`.tool_executor`: the runtime's artifact store -- a ``FileArtifactStore`` beside a persistent store is
written atomically and fsynced -- else a process-local journal). On re-execution, journalled calls are served from
the journal and only the calls that never completed run again. Executing executors are therefore driven one call
at a time. What remains at-least-once is a call that was *in flight* when the process died.

Runtime-owned tools: ``open_attachment`` calls are answered by the handler itself (:mod:`.attachments`), with any
executor; they only read, so they are neither journalled nor sent for approval.

Runtime call ids: a call without ``runtime_call_id`` gets ``rtcall_<key>_<n>`` (``n`` 1-based), stable across a
crash-and-retry of the step because the key is.
"""

from __future__ import annotations

import json
import locale
import os
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from abstractruntime import EffectOutcome, RunStatus, WaitReason, WaitState
from abstractruntime.logs import get_logger
from abstractruntime.models import utc_now_iso
from abstractruntime.policy import compute_idempotency_key
from abstractruntime_workspace import WorkspaceError, WorkspacePolicy

from . import attachments
from .llm_client import json_safe, parse_arguments, tokens_used
from .tool_executor import error_result, journal_for

log = get_logger("abstractruntime.abstractcore")

MISSING_RESULT = {"call_id": "", "runtime_call_id": None, "name": "", "success": False, "output": None,
                  "error": "Missing tool result"}
_WAIT_REASONS = {r.value for r in WaitReason}


# --- LLM_CALL ---------------------------------------------------------------------------------------------------
def _grounding_prefix() -> str:
    now = datetime.now().astimezone()
    country = os.environ.get("ABSTRACTRUNTIME_COUNTRY") or ""
    if not country:
        try:
            loc = locale.getlocale()[0] or ""
        except (ValueError, TypeError):
            loc = ""
        if "_" in loc:
            country = loc.split("_", 1)[1][:2]
    stamp = now.strftime("%Y-%m-%d %H:%M:%S")
    return f"[{stamp} {country.upper()}]" if country.strip() else f"[{stamp}]"


def _ground(prompt: Any, messages: Optional[List[Dict[str, Any]]]) -> Tuple[Any, Optional[List[Dict[str, Any]]]]:
    prefix = _grounding_prefix()
    if isinstance(prompt, str) and prompt.strip():
        return f"{prefix} {prompt}", messages
    if messages:
        for i in range(len(messages) - 1, -1, -1):
            m = messages[i]
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                messages = list(messages)
                messages[i] = {**m, "content": f"{prefix} {m['content']}"}
                break
    return prompt, messages


def _estimate_tokens(message: Mapping[str, Any]) -> int:
    content = message.get("content")
    text = content if isinstance(content, str) else json.dumps(content, default=str)
    return max(1, len(text) // 4)


def trim_messages(messages: List[Dict[str, Any]], max_input_tokens: Optional[int],
                  extra: str = "") -> List[Dict[str, Any]]:
    """Drop the oldest non-system messages until the estimate fits (the last message is always kept)."""
    if not max_input_tokens or max_input_tokens <= 0:
        return messages
    budget = int(max_input_tokens) - len(extra) // 4
    out = list(messages)
    while len(out) > 1 and sum(_estimate_tokens(m) for m in out) > budget:
        for i, m in enumerate(out[:-1]):
            if m.get("role") != "system":
                del out[i]
                break
        else:
            break
    return out


def _first_int(*values: Any) -> Optional[int]:
    for v in values:
        if v is None or isinstance(v, bool):
            continue
        try:
            return int(v)
        except (TypeError, ValueError):
            continue
    return None


def _idempotency_key(call: Any) -> str:
    key = getattr(call, "idempotency_key", None)
    if key:
        return key
    run = call.run
    return compute_idempotency_key(run_id=run.run_id, node_id=call.node_id, effect=call.effect, step=run.step)


def _resolve_media(media: Any, runtime: Any) -> Any:
    """``{"$artifact": id}`` refs become temporary files (AbstractCore takes paths)."""
    if not isinstance(media, list):
        return media
    out = []
    for item in media:
        if isinstance(item, dict) and "$artifact" in item:
            store = getattr(runtime, "artifact_store", None)
            artifact = store.load(item["$artifact"]) if store is not None else None
            if artifact is None:
                raise ValueError(f"media artifact {item['$artifact']!r} not found")
            import tempfile

            suffix = {"image/png": ".png", "image/jpeg": ".jpg", "application/pdf": ".pdf",
                      "text/plain": ".txt"}.get(getattr(artifact, "content_type", ""), "")
            fd, path = tempfile.mkstemp(prefix="abstractruntime-media-", suffix=suffix)
            with os.fdopen(fd, "wb") as fh:
                fh.write(artifact.content)
            out.append(path)
        else:
            out.append(item)
    return out


def llm_call(call: Any, llm: Any, *, grounding: bool = True) -> EffectOutcome:
    """Execute one LLM_CALL attempt with ``llm`` (an :class:`~.llm_client.AbstractCoreLLMClient`)."""
    payload = call.effect.payload if isinstance(call.effect.payload, dict) else {}
    prompt = payload.get("prompt")
    messages = payload.get("messages")
    has_prompt = isinstance(prompt, str) and bool(prompt.strip())
    has_messages = isinstance(messages, list) and len(messages) > 0
    if not has_prompt and not has_messages:
        return EffectOutcome.failed("llm_call requires payload.prompt or payload.messages")
    if llm is None:
        return EffectOutcome.failed(
            "llm_call has no LLM client: use create_local_runtime/create_remote_runtime, attach(runtime, llm=...), "
            "or set [abstractruntime.plugin_options.abstractcore] provider/model (or server_base_url)")
    run = call.run
    key = _idempotency_key(call)
    params = dict(payload.get("params")) if isinstance(payload.get("params"), dict) else {}
    trace = dict(params.get("trace_metadata")) if isinstance(params.get("trace_metadata"), dict) else {}
    trace.update({k: v for k, v in {"actor_id": run.actor_id, "session_id": run.session_id, "run_id": run.run_id,
                                    "parent_run_id": run.parent_run_id, "node_id": call.node_id,
                                    "idempotency_key": key}.items() if v is not None})
    params["trace_metadata"] = trace
    msgs: Optional[List[Dict[str, Any]]] = [dict(m) for m in messages if isinstance(m, dict)] if has_messages else None
    include_context = bool(payload.get("include_context", payload.get("use_context", False)))
    context_ns = run.vars.get("context") if isinstance(run.vars.get("context"), dict) else None
    if include_context and context_ns is not None and isinstance(context_ns.get("messages"), list):
        msgs = [dict(m) for m in context_ns["messages"] if isinstance(m, dict)] + (msgs or [])
    limits = run.vars.get("_limits") if isinstance(run.vars.get("_limits"), dict) else {}
    max_input = _first_int(payload.get("max_input_tokens"), limits.get("max_input_tokens"))
    max_output = _first_int(payload.get("max_output_tokens"), payload.get("max_out_tokens"),
                            payload.get("max_output_tokens_cap"))
    disable_trim = bool((run.vars.get("_runtime") or {}).get("disable_input_trimming")) \
        if isinstance(run.vars.get("_runtime"), dict) else False
    if msgs and max_input and not disable_trim:
        msgs = trim_messages(msgs, max_input, (prompt or "") if has_prompt else "")
    sent_prompt, sent_messages = (prompt if has_prompt else None), msgs
    if grounding and payload.get("grounding", True) is not False:
        sent_prompt, sent_messages = _ground(sent_prompt, sent_messages)
    try:
        media = _resolve_media(payload.get("media"), call.runtime)
    except Exception as exc:
        return EffectOutcome.failed(f"llm_call media error: {exc}")
    request: Dict[str, Any] = {
        "prompt": sent_prompt, "messages": sent_messages, "system_prompt": payload.get("system_prompt"),
        "tools": payload.get("tools") or None, "media": media or None,
        "provider": payload.get("provider"), "model": payload.get("model"),
        "response_schema": payload.get("response_schema"),
        "response_schema_name": payload.get("response_schema_name"),
        "max_input_tokens": max_input, "max_output_tokens": max_output, "params": params,
        "idempotency_key": key, "trace_metadata": trace,
    }
    retry_truncation = bool(payload.get("retry_on_truncation", False))
    refuse_truncation = bool(payload.get("no_truncation", False)) or payload.get("allow_truncation") is False
    max_truncation_attempts = max(1, _first_int(payload.get("max_truncation_attempts")) or 2)
    attempt = 0
    while True:
        attempt += 1
        try:
            result = llm.generate(**request)
        except Exception as exc:
            return EffectOutcome.failed(f"LLM call failed: {type(exc).__name__}: {exc}")
        truncated = str(result.get("finish_reason") or "").lower() in ("length", "max_tokens")
        if truncated and retry_truncation and attempt < max_truncation_attempts:
            current = request.get("max_output_tokens") or 1024
            request["max_output_tokens"] = int(current) * 2
            continue
        break
    if truncated and (refuse_truncation or retry_truncation):
        return EffectOutcome.failed(
            f"LLM output was truncated (finish_reason={result.get('finish_reason')}) after {attempt} attempt(s); "
            f"raise max_output_tokens or set allow_truncation")
    if payload.get("response_schema") is not None and result.get("data") is None:
        content = result.get("content")
        parsed = None
        if isinstance(content, str):
            try:
                parsed = json.loads(content)
            except ValueError:
                parsed = None
        if parsed is None and not payload.get("structured_output_fallback", False):
            return EffectOutcome.failed("LLM structured output: the response is not JSON matching response_schema")
        result["data"] = json_safe(parsed)
    used = tokens_used(result.get("usage"))
    if used is not None:  # the run's limits: persisted with this step's checkpoint
        limits_ns = run.vars.get("_limits")
        if not isinstance(limits_ns, dict):
            limits_ns = call.runtime.config.to_limits_dict() if hasattr(call.runtime, "config") else {}
            run.vars["_limits"] = limits_ns
        limits_ns["estimated_tokens_used"] = used
    if include_context:
        context_ns = run.vars.get("context")
        if not isinstance(context_ns, dict):
            context_ns = {}
            run.vars["context"] = context_ns
        history = context_ns.get("messages") if isinstance(context_ns.get("messages"), list) else []
        if has_prompt:
            history.append({"role": "user", "content": prompt})
        history.append({"role": "assistant", "content": result.get("content") or ""})
        context_ns["messages"] = history
    return EffectOutcome.completed(result)


# --- TOOL_CALLS -------------------------------------------------------------------------------------------------
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


def apply_workspace(policy: WorkspacePolicy, name: str, arguments: Dict[str, Any]) -> Dict[str, Any]:
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
        value = out.get(key)
        if isinstance(value, list):
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
        raise ValueError("tool_calls requires payload.tool_calls (list)")
    key = _idempotency_key(call)
    allowed = _allowed_tools(payload)
    try:
        policy: Any = WorkspacePolicy.from_vars(call.run.vars)
    except WorkspaceError as exc:  # a bad policy refuses the path tools, not the whole step
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
            raise RuntimeError("an executing tool executor returned no results")
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


# --- resuming tool waits ------------------------------------------------------------------------------------------
def merge_results(details: Mapping[str, Any], payload: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """Put host results back between blocked entries and runtime pre-results (spec §3.5)."""
    blocked = details.get("blocked_by_index") if isinstance(details.get("blocked_by_index"), Mapping) else {}
    pre = details.get("pre_results_by_index") if isinstance(details.get("pre_results_by_index"), Mapping) else {}
    if not blocked and not pre:
        return None
    results = payload.get("results")
    count = details.get("original_call_count")
    if not isinstance(results, list) or not isinstance(count, int) or len(results) == count:
        return None
    host = iter(results)
    merged = []
    for i in range(count):
        k = str(i)
        if k in blocked:
            merged.append(blocked[k])
        elif k in pre:
            merged.append(pre[k])
        else:
            merged.append(next(host, dict(MISSING_RESULT)))
    out = dict(payload)
    out["results"] = merged
    out.setdefault("mode", "executed")
    return out


_APPROVE = {"approve", "approved", "yes", "y", "allow", "ok", "true"}
_DENY = {"deny", "denied", "no", "n", "reject", "rejected", "false"}


def _decision(value: Any) -> Tuple[bool, Optional[str]]:
    if isinstance(value, bool):
        return value, None
    if isinstance(value, str) and value.strip().lower() in _APPROVE | _DENY:
        return value.strip().lower() in _APPROVE, None
    if isinstance(value, Mapping):
        if "approved" in value:
            ok = value["approved"]
        elif "decision" in value:
            ok = _decision(value["decision"])[0]
        else:
            raise ValueError(f"Decision {dict(value)!r} has no 'approved' field")
        reason = value.get("reason")
        return bool(ok), str(reason) if reason not in (None, "") else None
    raise ValueError(f"Invalid decision {value!r}: use true/false, 'approve'/'deny' or {{'approved': bool}}")


def parse_decisions(decisions: Any, calls: Sequence[Mapping[str, Any]]) -> List[Tuple[bool, Optional[str]]]:
    """One ``(approved, reason)`` per pending call. Accepts a single decision for all calls, a list (positional,
    or entries naming ``runtime_call_id``/``call_id``/``index``), or a mapping from those ids (or the index) to a
    decision. Every call needs a decision."""
    if isinstance(decisions, Mapping) and set(decisions) & {"approvals", "decisions"}:
        decisions = decisions.get("approvals", decisions.get("decisions"))
    if isinstance(decisions, (bool, str)) or (isinstance(decisions, Mapping) and "approved" in decisions):
        one = _decision(decisions)
        return [one for _ in calls]
    by_id: Dict[str, Any] = {}
    if isinstance(decisions, Mapping):
        by_id = {str(k): v for k, v in decisions.items()}
    elif isinstance(decisions, list):
        if all(not isinstance(d, Mapping) or not ({"runtime_call_id", "call_id", "index"} & set(d))
               for d in decisions):
            if len(decisions) != len(calls):
                raise ValueError(f"{len(decisions)} positional decision(s) for {len(calls)} tool call(s)")
            return [_decision(d) for d in decisions]
        for d in decisions:
            if not isinstance(d, Mapping):
                raise ValueError(f"Invalid decision {d!r}")
            ident = d.get("runtime_call_id") or d.get("call_id")
            by_id[str(ident if ident is not None else d.get("index"))] = d
    else:
        raise ValueError(f"Invalid decisions {decisions!r}")
    out = []
    missing = []
    for i, c in enumerate(calls):
        for ident in (c.get("runtime_call_id"), c.get("call_id"), str(i)):
            if ident is not None and str(ident) in by_id:
                out.append(_decision(by_id[str(ident)]))
                break
        else:
            missing.append(str(c.get("runtime_call_id") or i))
    if missing:
        raise ValueError(f"No decision for tool call(s): {', '.join(missing)}")
    return out


def _looks_like_decision(payload: Mapping[str, Any]) -> bool:
    return "results" not in payload and bool(set(payload) & {"approvals", "decisions", "approved", "approve",
                                                              "decision"})


def approval_payload(details: Mapping[str, Any], decisions: Any, *, approver: Optional[str],
                     execute: Any) -> Dict[str, Any]:
    """The resume payload of an approval wait: results of approved calls (``execute(call) -> result``) and
    denials, plus the decisions themselves (recorded in the ledger's resume row)."""
    calls = [c for c in details.get("tool_calls") or [] if isinstance(c, Mapping)]
    parsed = parse_decisions(decisions, calls)
    now = utc_now_iso()
    results, approvals = [], []
    for c, (ok, reason) in zip(calls, parsed):
        approvals.append({"runtime_call_id": c.get("runtime_call_id"), "call_id": c.get("call_id"),
                          "name": c.get("name"), "approved": ok, "reason": reason, "approver": approver,
                          "decided_at": now})
        if ok:
            results.append(execute(c))
        else:
            who = f" by {approver}" if approver else ""
            result = error_result(c, f"Tool call denied{who}" + (f": {reason}" if reason else ""))
            result["meta"] = {"denied": True}
            results.append(result)
    return {"mode": "executed", "results": results, "approvals": approvals}


def prepare_resume(wait: Any, payload: Any) -> Optional[Dict[str, Any]]:
    """The plugin's ``abstractruntime_prepare_resume_payload``: merge tool-wait results; turn an approval
    decision that denies every call into denial results (approving needs ``resolve_tool_approval``)."""
    details = getattr(wait, "details", None)
    if not isinstance(details, Mapping) or not isinstance(payload, Mapping) or "tool_calls" not in details \
            or "mode" not in details:
        return None
    if details.get("mode") == "approval_required" and _looks_like_decision(payload):
        def refuse(_call: Mapping[str, Any]) -> Dict[str, Any]:
            raise ValueError("approved tool calls must be executed by the runtime: call "
                             "runtime.resolve_tool_approval(workflow=..., run_id=..., decisions=...) instead of resume()")

        approver = payload.get("approver") if isinstance(payload.get("approver"), str) else None
        decided = approval_payload(details, payload, approver=approver, execute=refuse)
        return merge_results(details, decided) or decided
    return merge_results(details, payload)


def resolve_tool_approval(runtime: Any, *, workflow: Any, run_id: str, decisions: Any,
                          approver: Optional[str] = None, tools: Any = None, max_steps: int = 100) -> Any:
    """Answer a tool-approval wait: run the approved calls (journalled under the step's key), record the
    decisions and results in the resume row, and continue the run. Returns the new ``RunState``.

    ``tools`` defaults to the executor the approval wrapped (``attach(runtime, tools=ApprovalToolExecutor(...))``
    or the plugin options)."""
    from .plugin import integration_for

    run = runtime.get_state(run_id)
    wait = run.waiting
    details = wait.details if wait is not None else None
    if run.status is not RunStatus.WAITING or not isinstance(details, Mapping) or \
            details.get("mode") != "approval_required":
        from abstractruntime.errors import RunNotWaitingError

        raise RunNotWaitingError(f"Run {run_id} is not waiting for a tool approval", run_id=run_id)
    if tools is None:
        configured = integration_for(runtime).tools
        tools = getattr(configured, "inner", configured)
    approval = details.get("approval") if isinstance(details.get("approval"), Mapping) else {}
    key = str(approval.get("id") or f"approval:{run_id}:{wait.wait_key}")
    journal = journal_for(runtime)

    def execute(c: Mapping[str, Any]) -> Dict[str, Any]:
        done = journal.get(key, str(c.get("runtime_call_id")))
        if done is not None:
            return done
        if tools is None:
            raise ValueError("resolve_tool_approval: no tool executor to run the approved calls (pass tools=)")
        results: Dict[int, Dict[str, Any]] = {}
        _execute_journalled(tools, [(0, dict(c))], journal, key, run_id, results)
        return results[0]

    payload = approval_payload(details, decisions, approver=approver, execute=execute)
    return runtime.resume(workflow=workflow, run_id=run_id, wait_key=wait.wait_key, payload=payload,
                          max_steps=max_steps)


# --- reference-style handlers (``Runtime(effect_handlers=...)``) ---------------------------------------------------
class _LegacyCall:
    """What a reference-style handler ``fn(run, effect, default_next_node)`` can offer: the key is recomputed the
    way ``DefaultEffectPolicy`` computes it."""

    def __init__(self, run: Any, effect: Any, default_next_node: Optional[str], runtime: Any = None) -> None:
        self.run = run
        self.effect = effect
        self.default_next_node = default_next_node
        self.node_id = run.current_node
        self.runtime = runtime
        self.idempotency_key = compute_idempotency_key(run_id=run.run_id, node_id=run.current_node, effect=effect,
                                                       step=getattr(run, "step", None))
        self.attempt = 1


class _LegacyStores:
    """The stores a reference-style handler was given: what ``open_attachment`` reads."""

    def __init__(self, artifact_store: Any, run_store: Any) -> None:
        self.artifact_store = artifact_store
        self.run_store = run_store


def build_effect_handlers(*, llm: Any, tools: Any = None, artifact_store: Any = None,
                          run_store: Any = None) -> Dict[Any, Any]:
    """``{EffectType.LLM_CALL: fn, EffectType.TOOL_CALLS: fn}`` for ``Runtime(effect_handlers=...)``.

    Reference-style handlers do not see the runtime: prefer the plugin (the factories use it). Tool results are
    journalled in ``artifact_store`` when given, else in process memory; ``open_attachment`` reads
    ``artifact_store`` (and ``run_store`` for the ancestors of a child run)."""
    from abstractruntime import EffectType

    from .tool_executor import ArtifactToolResultJournal, MemoryToolResultJournal

    journal = ArtifactToolResultJournal(artifact_store) if artifact_store is not None else MemoryToolResultJournal()
    stores = _LegacyStores(artifact_store, run_store)

    def llm_handler(run: Any, effect: Any, default_next_node: Optional[str] = None) -> EffectOutcome:
        return llm_call(_LegacyCall(run, effect, default_next_node), llm)

    def tools_handler(run: Any, effect: Any, default_next_node: Optional[str] = None) -> EffectOutcome:
        return tool_calls(_LegacyCall(run, effect, default_next_node, runtime=stores), tools, journal=journal)

    return {EffectType.LLM_CALL: llm_handler, EffectType.TOOL_CALLS: tools_handler}


__all__ = ["llm_call", "tool_calls", "prepare_resume", "merge_results", "resolve_tool_approval",
           "build_effect_handlers", "parse_decisions"]
