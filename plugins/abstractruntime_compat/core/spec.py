"""Reference path ``abstractruntime.core.spec``."""

from typing import Protocol, runtime_checkable

from abstractruntime.models import NodeHandler, WorkflowSpec


@runtime_checkable
class RunContext(Protocol):
    def now_iso(self) -> str: ...


__all__ = ["WorkflowSpec", "RunContext", "NodeHandler"]
