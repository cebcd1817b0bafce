"""Reference path ``abstractruntime.memory.active_memory``."""

from abstractruntime_active_memory.memact import (
    DEFAULT_LIMITS,
    DEFAULT_PERSONA_MD,
    MEMACT_ACTIVE_MEMORY_VERSION,
    MEMACT_ENVELOPE_SCHEMA_V1,
    MEMORY_BLUEPRINTS_MD,
    apply_memact_envelope,
    ensure_memact_memory,
    get_memact_memory,
    render_memact_blocks,
    render_memact_system_prompt,
    utc_now_compact_seconds,
    utc_now_iso_seconds,
)

__all__ = ["MEMACT_ACTIVE_MEMORY_VERSION", "MEMORY_BLUEPRINTS_MD", "DEFAULT_PERSONA_MD", "DEFAULT_LIMITS",
           "MEMACT_ENVELOPE_SCHEMA_V1", "utc_now_iso_seconds", "utc_now_compact_seconds", "get_memact_memory",
           "ensure_memact_memory", "apply_memact_envelope", "render_memact_blocks", "render_memact_system_prompt"]
