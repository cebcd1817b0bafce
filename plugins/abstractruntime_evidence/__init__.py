"""Builtin plugin ``evidence``: artifact-backed evidence for the results of selected tools.

It wraps ``TOOL_CALLS`` execution through the ``abstractruntime_execute_effect`` hook (the kernel has no evidence
code): after a completed tool-calls effect, results of the configured tools get an evidence record in the
artifact store, ``meta.evidence_id`` on the result, and a span in ``vars._runtime.memory_spans``. A recorder that
fails adds a warning to ``vars._runtime.evidence_warnings``; it never fails the run.

Options (``[abstractruntime.plugin_options.evidence]``, :class:`EvidenceOptions`): ``tool_names`` (default
web_search, fetch_url, execute_command). Runtime methods: ``list_evidence(run_id)``, ``load_evidence(evidence_id)``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from attrs import field, frozen

from abstractruntime import EffectCall, EffectOutcome, EffectType, hookimpl
from abstractruntime.descriptors import RuntimeMethodDescriptor
from abstractruntime.errors import InvalidStateError, ValidationError
from abstractruntime_pluginkit import plugin_options

from .recorder import DEFAULT_EVIDENCE_TOOL_NAMES, EvidenceCaptureStats, EvidenceRecorder, list_evidence, warn

#: evidence is stored as artifacts
abstractruntime_requires = ('artifacts',)

__all__ = ["EvidenceRecorder", "EvidenceCaptureStats", "DEFAULT_EVIDENCE_TOOL_NAMES", "EvidenceOptions"]

PLUGIN_NAME = "evidence"


def _tool_names_valid(_instance: Any, _attribute: Any, value: Optional[Tuple[str, ...]]) -> None:
    if value is not None and not all(n.strip() for n in value):
        raise ValidationError(f"tool_names must be a list of tool names, got {list(value)!r}")


@frozen
class EvidenceOptions:
    """``[abstractruntime.plugin_options.evidence]``."""

    #: the tools whose results get evidence; None: :data:`DEFAULT_EVIDENCE_TOOL_NAMES`
    tool_names: Optional[Tuple[str, ...]] = field(default=None, validator=_tool_names_valid)


def _artifact_store(runtime: Any) -> Optional[Any]:
    if runtime.artifact_store is not None:
        return runtime.artifact_store
    try:
        from abstractruntime_artifacts import artifact_store_for
    except ImportError:
        return None
    return artifact_store_for(runtime)


def _options(runtime: Any) -> EvidenceOptions:
    return plugin_options(runtime, PLUGIN_NAME, EvidenceOptions)


def _tool_names(runtime: Any) -> List[str]:
    names = _options(runtime).tool_names
    return list(DEFAULT_EVIDENCE_TOOL_NAMES) if names is None else list(names)


@hookimpl
def abstractruntime_runtime_created(runtime: Any) -> None:
    """A bad ``tool_names`` fails ``Runtime(...)``."""
    _tool_names(runtime)


@hookimpl(wrapper=True)
def abstractruntime_execute_effect(call: EffectCall):
    outcome = yield
    if (call.effect.type_value != EffectType.TOOL_CALLS.value or not isinstance(outcome, EffectOutcome)
            or outcome.status != "completed" or not isinstance(outcome.result, dict)):
        return outcome
    try:
        store = _artifact_store(call.runtime)
        if store is None:
            return outcome
        tool_calls = call.effect.payload.get("tool_calls") or []
        EvidenceRecorder(artifact_store=store, tool_names=_tool_names(call.runtime)).record_tool_calls(
            run=call.run, node_id=call.node_id, tool_calls=tool_calls, tool_results=outcome.result)
    except Exception as exc:  # evidence is best-effort: never fail the run
        warn(call.run, call.node_id, f"{type(exc).__name__}: {exc}")
    return outcome


#: only TOOL_CALLS leave evidence: for any other effect the kernel passes this wrapper by (docs/hooks.md, ``active``)
abstractruntime_execute_effect.active = (  # type: ignore[attr-defined]
    lambda call, **_: call.effect.type_value == EffectType.TOOL_CALLS.value)


def _list_evidence(runtime: Any, run_id: str) -> List[Dict[str, Any]]:
    return list_evidence(runtime.get_state(run_id))


def _load_evidence(runtime: Any, evidence_id: str) -> Optional[Dict[str, Any]]:
    store = _artifact_store(runtime)
    if store is None:
        raise InvalidStateError("load_evidence needs an artifact store (pass artifact_store= or use a persistent store)")
    return store.load_json(evidence_id)


@hookimpl
def abstractruntime_register_runtime_methods() -> List[RuntimeMethodDescriptor]:
    return [
        RuntimeMethodDescriptor("list_evidence", _list_evidence, "Evidence spans of a run"),
        RuntimeMethodDescriptor("load_evidence", _load_evidence, "One evidence record"),
    ]


@hookimpl(wrapper=True)
def abstractruntime_prepare_resume_payload(run: Any, wait: Any, payload: Dict[str, Any], runtime: Any):
    """Tool results delivered by ``resume`` (passthrough / approval waits) get evidence too (reference §3.5).

    A wrapper, so it sees the payload after every other plugin reshaped it (e.g. merged positional results).
    Failures are ignored on resume, as in the reference.
    """
    replaced = yield
    final = replaced if replaced is not None else payload
    details = getattr(wait, "details", None) or {}
    tool_calls = details.get("tool_calls_for_evidence") or details.get("tool_calls")
    if not isinstance(tool_calls, list) or not isinstance(final, dict) or not isinstance(final.get("results"), list):
        return replaced
    try:
        store = _artifact_store(runtime)
        if store is not None:
            EvidenceRecorder(artifact_store=store, tool_names=_tool_names(runtime)).record_tool_calls(
                run=run, node_id=run.current_node, tool_calls=tool_calls, tool_results=final)
    except Exception:
        pass
    return replaced
