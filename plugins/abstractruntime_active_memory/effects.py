"""The memory effects: MEMORY_NOTE, MEMORY_QUERY, MEMORY_TAG, MEMORY_COMPACT, MEMORY_REHYDRATE.

Every handler is safe to re-run for the same step (a crash between a write and the step's commit): ids derive from
the step's idempotency key, a span already written is not written twice, and a compaction already applied is not
applied again. Bad input never fails the run: it is an error result (``success: false``) the workflow can read.

The handlers live by concern: :mod:`.memory_call` (what every memory effect shares: :class:`Memory`,
:class:`Refused`, the result envelope), :mod:`.notes` (MEMORY_NOTE, MEMORY_TAG, MEMORY_QUERY) and
:mod:`.compaction` (MEMORY_COMPACT, MEMORY_REHYDRATE); this module keeps their public names.
"""

from __future__ import annotations

from .compaction import COMPRESSION, PLACEMENTS, memory_compact, memory_rehydrate
from .memory_call import NO_STORE, Memory, Refused, envelope
from .notes import memory_note, memory_query, memory_tag

__all__ = ["memory_note", "memory_query", "memory_tag", "memory_compact", "memory_rehydrate",
           "COMPRESSION", "PLACEMENTS", "NO_STORE", "Memory", "Refused", "envelope"]
