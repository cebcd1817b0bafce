"""``EvidenceRecorder``: artifact-backed evidence for the results of selected tools (reference §12)."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Sequence, Tuple

from attrs import frozen

from abstractruntime.models import RunState, utc_now_iso
from abstractruntime_pluginkit.jsonload import loads_bounded

DEFAULT_EVIDENCE_TOOL_NAMES: Tuple[str, ...] = ("web_search", "fetch_url", "execute_command")


@frozen
class EvidenceCaptureStats:
    """What :meth:`EvidenceRecorder.record_tool_calls` did: ``recorded`` evidence records were written."""

    recorded: int = 0


def _ref(artifact_id: str) -> Dict[str, str]:
    return {"$artifact": artifact_id}


class EvidenceRecorder:
    def __init__(self, *, artifact_store: Any, tool_names: Sequence[str] = DEFAULT_EVIDENCE_TOOL_NAMES) -> None:
        self.artifact_store = artifact_store
        self.tool_names = tuple(tool_names)

    def _text(self, text: str, run: RunState, tool: str, field: str) -> Dict[str, str]:
        meta = self.artifact_store.store_text(text, run_id=run.run_id,
                                              tags={"kind": "evidence_content", "tool": tool, "field": field})
        return _ref(meta.artifact_id)

    def _json(self, data: Any, run: RunState, tool: str, field: str) -> Dict[str, str]:
        meta = self.artifact_store.store_json(data, run_id=run.run_id,
                                              tags={"kind": "evidence_content", "tool": tool, "field": field})
        return _ref(meta.artifact_id)

    def _capture(self, tool: str, output: Any, run: RunState) -> Tuple[Dict[str, Any], Any]:
        """Move the bulky parts of a tool's output into artifacts: (artifact refs, output rewritten with refs)."""
        refs: Dict[str, Any] = {}
        if tool == "fetch_url" and isinstance(output, dict):
            rewritten = dict(output)
            for field in ("raw_text", "normalized_text"):
                if isinstance(output.get(field), str):
                    refs[field] = self._text(output[field], run, tool, field)
                    rewritten[field] = refs[field]
            return refs, rewritten
        if tool == "execute_command":
            if isinstance(output, dict):
                rewritten = dict(output)
                for field in ("stdout", "stderr"):
                    if isinstance(output.get(field), str):
                        refs[field] = self._text(output[field], run, tool, field)
                        rewritten[field] = refs[field]
                return refs, rewritten
            if isinstance(output, str):
                refs["output"] = self._text(output, run, tool, "output")
                return refs, refs["output"]
            return refs, output
        if tool == "web_search":
            data = output
            if isinstance(output, str):
                try:
                    data = loads_bounded(output, what="web_search output")
                except ValueError:  # not JSON, or nested too deep: kept as text
                    refs["results"] = self._text(output, run, tool, "results")
                    return refs, refs["results"]
            refs["results"] = self._json(data, run, tool, "results")
            return refs, refs["results"]
        return refs, output

    def record_tool_calls(
        self, *, run: RunState, node_id: str, tool_calls: Sequence[Dict[str, Any]],
        tool_results: Dict[str, Any],
    ) -> EvidenceCaptureStats:
        """Record evidence for each result of a configured tool; rewrite results in place to carry refs.

        Returns an :class:`EvidenceCaptureStats` (``recorded``: how many evidence records were written; each
        rewritten result carries its id in ``meta.evidence_id``). Appends a span ``{kind: "evidence", ...}`` to ``run.vars._runtime.memory_spans``.
        """
        results = tool_results.get("results") if isinstance(tool_results, dict) else None
        if not isinstance(results, list):
            return EvidenceCaptureStats(recorded=0)
        calls_by_id = {str(c.get("call_id")): c for c in tool_calls if isinstance(c, dict)}
        evidence_ids: List[str] = []
        runtime_ns = run.vars.setdefault("_runtime", {})
        spans = runtime_ns.setdefault("memory_spans", [])
        for index, result in enumerate(results):
            if not isinstance(result, dict) or result.get("name") not in self.tool_names:
                continue
            tool = result["name"]
            call = calls_by_id.get(str(result.get("call_id"))) or (
                tool_calls[index] if index < len(tool_calls) and isinstance(tool_calls[index], dict) else {})
            refs, rewritten = self._capture(tool, result.get("output"), run)
            record = {
                "tool_name": tool, "call_id": result.get("call_id"), "success": bool(result.get("success")),
                "error": result.get("error"), "created_at": utc_now_iso(), "run_id": run.run_id,
                "workflow_id": run.workflow_id, "node_id": node_id, "arguments": call.get("arguments"),
                "artifacts": refs,
            }
            if run.actor_id:
                record["actor_id"] = run.actor_id
            if run.session_id:
                record["session_id"] = run.session_id
            meta = self.artifact_store.store_json(record, run_id=run.run_id,
                                                  tags={"kind": "evidence", "tool": tool, "node_id": node_id})
            evidence_id = meta.artifact_id
            evidence_ids.append(evidence_id)
            result["output"] = rewritten
            result.setdefault("meta", {})
            if isinstance(result["meta"], dict):
                result["meta"]["evidence_id"] = evidence_id
            spans.append({"kind": "evidence", "evidence_id": evidence_id, "tool_name": tool,
                          "call_id": result.get("call_id"), "node_id": node_id, "created_at": record["created_at"],
                          "success": record["success"]})
        return EvidenceCaptureStats(recorded=len(evidence_ids))


def list_evidence(run: RunState) -> List[Dict[str, Any]]:
    runtime_ns = run.vars.get("_runtime") if isinstance(run.vars, dict) else None
    spans = runtime_ns.get("memory_spans") if isinstance(runtime_ns, dict) else None
    return [dict(s) for s in spans or [] if isinstance(s, dict) and s.get("kind") == "evidence"]


def warn(run: RunState, node_id: str, error: str) -> None:
    runtime_ns = run.vars.setdefault("_runtime", {})
    runtime_ns.setdefault("evidence_warnings", []).append({"ts": utc_now_iso(), "node_id": node_id, "error": error})


__all__ = ["EvidenceRecorder", "EvidenceCaptureStats", "DEFAULT_EVIDENCE_TOOL_NAMES", "list_evidence"]

