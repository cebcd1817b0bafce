"""Reference path ``abstractruntime.evidence.recorder``, where 0.4.2 defined the recorder and its stats object."""

from abstractruntime_evidence.recorder import DEFAULT_EVIDENCE_TOOL_NAMES, EvidenceCaptureStats, EvidenceRecorder

__all__ = ["EvidenceRecorder", "EvidenceCaptureStats", "DEFAULT_EVIDENCE_TOOL_NAMES"]
