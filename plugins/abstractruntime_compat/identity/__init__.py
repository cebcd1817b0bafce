"""Reference path ``abstractruntime.identity``."""

from .fingerprint import ActorFingerprint

__all__ = ["ActorFingerprint"]
