"""The 0.4.2 module map of ``abstractruntime.memory.*``, ``abstractruntime.rendering.*`` and the scheduler submodules
(integration-surface spec §1.15-§1.17): every listed name imports from its reference path, and every callable has
the signature the spec states (parameter names, kinds and defaults).

The expected signatures are the spec's text, parsed by Python itself (``def f<signature>: ...``) in a namespace
holding the names a default may refer to.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Dict

import attrs
import pytest

#: (module, name) -> the signature the spec gives, as Python parameter text ("self" for instance methods)
SIGNATURES: Dict[tuple, str] = {
    # §1.15 active_context
    ("abstractruntime.memory.active_context", "TimeRange"): "(start=None, end=None)",
    ("abstractruntime.memory.active_context", "TimeRange.contains"): "(self, *, start, end)",
    ("abstractruntime.memory.active_context", "ActiveContextPolicy"): "(*, run_store, artifact_store)",
    ("abstractruntime.memory.active_context", "ActiveContextPolicy.list_memory_spans"): "(self, run_id)",
    ("abstractruntime.memory.active_context", "ActiveContextPolicy.list_memory_spans_from_run"): "(run)",
    ("abstractruntime.memory.active_context", "ActiveContextPolicy.filter_spans"):
        "(self, run_id, *, time_range=None, tags=None, tags_mode='all', authors=None, locations=None, query=None, "
        "limit=1000)",
    ("abstractruntime.memory.active_context", "ActiveContextPolicy.filter_spans_from_run"):
        "(run, *, artifact_store, time_range=None, tags=None, tags_mode='all', authors=None, locations=None, "
        "query=None, limit=1000)",
    ("abstractruntime.memory.active_context", "ActiveContextPolicy.rehydrate_into_context"):
        "(self, run_id, *, span_ids, placement='after_summary', dedup_by='message_id', max_messages=None)",
    ("abstractruntime.memory.active_context", "ActiveContextPolicy.rehydrate_into_context_from_run"):
        "(self, run, *, span_ids, placement='after_summary', dedup_by='message_id', max_messages=None)",
    ("abstractruntime.memory.active_context", "ActiveContextPolicy.select_active_messages_for_llm"):
        "(self, run_id, *, max_history_messages=None)",
    ("abstractruntime.memory.active_context", "ActiveContextPolicy.select_active_messages_for_llm_from_run"):
        "(run, *, max_history_messages=None)",
    ("abstractruntime.memory.active_context", "ActiveContextPolicy.select_messages_view"):
        "(messages, *, max_history_messages)",
    ("abstractruntime.memory.active_context", "ActiveContextPolicy.resolve_span_ids_from_spans"): "(span_ids, spans)",
    ("abstractruntime.memory.active_context", "ActiveContextPolicy.summary_text_by_artifact_id_from_run"): "(run)",
    # §1.15 active_memory
    ("abstractruntime.memory.active_memory", "utc_now_iso_seconds"): "()",
    ("abstractruntime.memory.active_memory", "utc_now_compact_seconds"): "()",
    ("abstractruntime.memory.active_memory", "get_memact_memory"): "(vars)",
    ("abstractruntime.memory.active_memory", "ensure_memact_memory"): "(vars, *, now_iso=utc_now_iso_seconds)",
    ("abstractruntime.memory.active_memory", "apply_memact_envelope"):
        "(vars, *, envelope, now_iso=utc_now_iso_seconds, now_compact=utc_now_compact_seconds)",
    ("abstractruntime.memory.active_memory", "render_memact_blocks"): "(vars)",
    ("abstractruntime.memory.active_memory", "render_memact_system_prompt"): "(vars)",
    # §1.15 compaction
    ("abstractruntime.memory.compaction", "normalize_messages"): "(messages, *, now_iso)",
    ("abstractruntime.memory.compaction", "CompactionSplit"): "(system_messages, older_messages, recent_messages)",
    ("abstractruntime.memory.compaction", "split_for_compaction"): "(messages, *, preserve_recent)",
    ("abstractruntime.memory.compaction", "span_metadata_from_messages"): "(messages)",
    # §1.15 recall_levels
    ("abstractruntime.memory.recall_levels", "parse_recall_level"): "(raw)",
    ("abstractruntime.memory.recall_levels", "RecallPolicy"): "(level, span, rehydrate, kg)",
    ("abstractruntime.memory.recall_levels", "SpanRecallPolicy"):
        "(limit_spans_default, limit_spans_max, deep_allowed, deep_limit_spans_max, "
        "deep_limit_messages_per_span_max, connected_allowed, neighbor_hops_max, max_messages_default, "
        "max_messages_max)",
    ("abstractruntime.memory.recall_levels", "RehydratePolicy"): "(max_messages_default, max_messages_max)",
    ("abstractruntime.memory.recall_levels", "KgQueryPolicy"):
        "(min_score_default, min_score_floor, limit_default, limit_max, max_input_tokens_default, "
        "max_input_tokens_max)",
    ("abstractruntime.memory.recall_levels", "policy_for"): "(level)",
    # §1.15 kg_packets
    ("abstractruntime.memory.kg_packets", "packetize_assertions"): "(items)",
    ("abstractruntime.memory.kg_packets", "pack_active_memory_text"):
        "(packets, *, scope, max_input_tokens, model=None, title='KG ACTIVE MEMORY', include_scores=True)",
    # §1.15 memact_composer
    ("abstractruntime.memory.memact_composer", "compose_memact_current_context_from_kg_result"):
        "(vars, *, kg_result, stimulus, marker='KG:', max_items=None)",
    # §1.15 token_budget
    ("abstractruntime.memory.token_budget", "estimate_tokens"): "(text, *, model=None)",
    ("abstractruntime.memory.token_budget", "estimate_message_tokens"): "(message, *, model=None)",
    ("abstractruntime.memory.token_budget", "trim_messages_to_max_input_tokens"):
        "(messages, *, max_input_tokens, model=None)",
    # §1.16 rendering
    ("abstractruntime.rendering.json_stringify", "stringify_json"):
        "(value, *, mode=JsonStringifyMode.BEAUTIFY, beautify_indent=2, sort_keys=False, parse_strings=True)",
    ("abstractruntime.rendering.agent_trace_report", "AgentTraceMarkdownReportConfig"):
        "(include_timestamps=False, json_mode=JsonStringifyMode.BEAUTIFY)",
    ("abstractruntime.rendering.agent_trace_report", "render_agent_trace_markdown"): "(scratchpad, *, config=None)",
    # §1.17 scheduler
    ("abstractruntime.scheduler.scheduler", "utc_now_iso"): "()",
}

STATIC = {"list_memory_spans_from_run", "filter_spans_from_run", "select_active_messages_for_llm_from_run",
          "select_messages_view", "resolve_span_ids_from_spans", "summary_text_by_artifact_id_from_run"}

#: module -> the public names it must have (beyond the signatures above)
NAMES = {
    "abstractruntime.memory": ["ActiveContextPolicy", "TimeRange"],
    "abstractruntime.memory.active_context": ["SpanId", "TimeRange", "ActiveContextPolicy"],
    "abstractruntime.memory.active_memory": [
        "MEMACT_ACTIVE_MEMORY_VERSION", "MEMORY_BLUEPRINTS_MD", "DEFAULT_PERSONA_MD", "DEFAULT_LIMITS",
        "MEMACT_ENVELOPE_SCHEMA_V1"],
    "abstractruntime.memory.compaction": ["CompactionSplit"],
    "abstractruntime.memory.recall_levels": ["RecallLevel", "SpanRecallPolicy", "RehydratePolicy", "KgQueryPolicy",
                                             "RecallPolicy"],
    "abstractruntime.memory.kg_packets": ["KG_MEMORY_PACKETS_VERSION"],
    "abstractruntime.rendering": ["JsonStringifyMode", "stringify_json", "render_agent_trace_markdown"],
    "abstractruntime.rendering.json_stringify": ["JsonStringifyMode"],
    "abstractruntime.scheduler.registry": ["WorkflowRegistry"],
    "abstractruntime.scheduler.convenience": ["ScheduledRuntime", "create_scheduled_runtime"],
    "abstractruntime.scheduler.scheduler": ["Scheduler", "SchedulerStats"],
}


def _resolve(module: str, dotted: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _expected(module: str, text: str) -> inspect.Signature:
    namespace: Dict[str, Any] = dict(vars(importlib.import_module(module)))
    namespace.update(vars(importlib.import_module("abstractruntime.rendering.json_stringify")))
    exec(f"def _f{text}: pass", namespace)
    return inspect.signature(namespace["_f"])


def _shape(sig: inspect.Signature) -> list:
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


@pytest.mark.parametrize("key", sorted(SIGNATURES), ids=lambda k: f"{k[0].rsplit('.', 1)[-1]}.{k[1]}")
def test_signature_is_the_specs(key):
    module, dotted = key
    obj = _resolve(module, dotted)
    assert _shape(inspect.signature(obj)) == _shape(_expected(module, SIGNATURES[key]))
    owner, _, method = dotted.rpartition(".")
    if owner:
        is_static = isinstance(inspect.getattr_static(_resolve(module, owner), method), staticmethod)
        assert is_static == (method in STATIC), f"{dotted}: static={is_static}"


@pytest.mark.parametrize("module", sorted(NAMES))
def test_names_import_from_the_reference_path(module):
    mod = importlib.import_module(module)
    missing = [n for n in NAMES[module] if not hasattr(mod, n)]
    assert missing == []


def test_package_exports():
    import abstractruntime.memory as memory
    import abstractruntime.rendering as rendering

    assert sorted(memory.__all__) == ["ActiveContextPolicy", "TimeRange"]
    assert sorted(rendering.__all__) == ["JsonStringifyMode", "render_agent_trace_markdown", "stringify_json"]


def test_constants_and_enums():
    from abstractruntime.memory.active_memory import DEFAULT_LIMITS, MEMACT_ACTIVE_MEMORY_VERSION
    from abstractruntime.memory.kg_packets import KG_MEMORY_PACKETS_VERSION
    from abstractruntime.memory.recall_levels import RecallLevel
    from abstractruntime.rendering import JsonStringifyMode

    assert MEMACT_ACTIVE_MEMORY_VERSION == 1 and KG_MEMORY_PACKETS_VERSION == 0
    assert DEFAULT_LIMITS == {"relationships": 40, "current_tasks": 8, "current_context": 60,
                              "critical_insights": 60, "references": 80, "history": 200}
    assert [(m.name, m.value) for m in RecallLevel] == [("URGENT", "urgent"), ("STANDARD", "standard"),
                                                          ("DEEP", "deep")]
    assert [(m.name, m.value) for m in JsonStringifyMode] == [("NONE", "none"), ("BEAUTIFY", "beautify"),
                                                                ("MINIFIED", "minified")]
    assert issubclass(RecallLevel, str) and issubclass(JsonStringifyMode, str)


def test_value_classes_are_frozen():
    from abstractruntime.memory import TimeRange
    from abstractruntime.memory.compaction import CompactionSplit
    from abstractruntime.memory.recall_levels import policy_for
    from abstractruntime.rendering.agent_trace_report import AgentTraceMarkdownReportConfig

    for obj, field in [(TimeRange(), "start"), (CompactionSplit([], [], []), "older_messages"),
                       (policy_for("deep"), "level"), (policy_for("deep").kg, "limit_max"),
                       (AgentTraceMarkdownReportConfig(), "include_timestamps")]:
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(obj, field, None)


def test_scheduler_submodules_are_the_package_objects():
    import abstractruntime.scheduler as scheduler
    from abstractruntime.scheduler import convenience, registry

    assert registry.WorkflowRegistry is scheduler.WorkflowRegistry
    assert convenience.ScheduledRuntime is scheduler.ScheduledRuntime
    assert convenience.create_scheduled_runtime is scheduler.create_scheduled_runtime
