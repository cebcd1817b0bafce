"""Marks of the store conformance suite."""

from __future__ import annotations

from typing import Any

from ..storage.base import Capability


def capability(cap: Capability) -> Any:
    """Mark a conformance test as a test of an optional ability: it runs only for backends declaring ``cap``."""

    def mark(fn: Any) -> Any:
        fn.capability = cap
        return fn

    return mark
