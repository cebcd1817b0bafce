"""Reference path ``abstractruntime.evidence`` (the recorder lives in the ``evidence`` plugin)."""

from abstractruntime_evidence.recorder import DEFAULT_EVIDENCE_TOOL_NAMES, EvidenceCaptureStats, EvidenceRecorder

__all__ = ["EvidenceRecorder", "DEFAULT_EVIDENCE_TOOL_NAMES", "EvidenceCaptureStats"]
