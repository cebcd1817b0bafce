"""Reference path ``abstractruntime.memory.compaction`` (the helpers; the ``MEMORY_COMPACT`` effect is the
``active_memory`` plugin's)."""

from abstractruntime_active_memory.compaction_split import (
    CompactionSplit,
    normalize_messages,
    span_metadata_from_messages,
    split_for_compaction,
)

__all__ = ["normalize_messages", "CompactionSplit", "split_for_compaction", "span_metadata_from_messages"]
