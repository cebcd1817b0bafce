"""Reference path ``abstractruntime.memory.kg_packets``."""

from abstractruntime_active_memory.kg_packets import (
    KG_MEMORY_PACKETS_VERSION,
    pack_active_memory_text,
    packetize_assertions,
)

__all__ = ["KG_MEMORY_PACKETS_VERSION", "packetize_assertions", "pack_active_memory_text"]
