"""The errors the ``abstractcore`` plugin raises.

Every class derives from :class:`abstractruntime.errors.AbstractRuntimeError` and keeps the builtin base callers
already catch (``ValueError``, ``RuntimeError``, ``TimeoutError``, ``KeyError``/``LookupError``,
``ModuleNotFoundError``). Dependency-free: importing it does not import ``abstractcore``.
"""

from __future__ import annotations

from typing import Optional

from abstractruntime.errors import AbstractRuntimeError, NotFoundError, ValidationError


class AbstractCoreNotInstalledError(AbstractRuntimeError, ModuleNotFoundError):
    """The ``abstractcore`` package is not installed (the message says how to install it)."""

    def __init__(self, message: str, *, name: Optional[str] = None) -> None:
        super().__init__(message)
        self.name = name


class LLMServerError(AbstractRuntimeError, RuntimeError):
    """An AbstractCore (or OpenAI-compatible) server did not answer an LLM request; ``status`` is its HTTP status."""

    def __init__(self, message: str, *, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


class ResponseSchemaError(ValidationError):
    """``response_schema`` of an LLM call is not a JSON Schema (or a field map) the runtime understands."""


class MediaError(ValidationError):
    """A ``media`` entry of an LLM call that cannot be given to the model (e.g. a missing artifact)."""


class ToolSpecError(ValidationError):
    """A tool spec could not be made from the object given."""


class UnknownToolsetError(ValidationError):
    """A toolset name other than ``files``, ``web``, ``system``, ``comms``."""


class ToolNotFoundError(NotFoundError):
    """AbstractCore has no tool of that name (a ``LookupError``)."""


class ToolExecutorError(AbstractRuntimeError, RuntimeError):
    """A tool executor broke its contract (e.g. an executing executor returned no results)."""


class ToolTimeoutError(AbstractRuntimeError, TimeoutError):
    """A tool call exceeded its timeout (it keeps running in a daemon thread: Python cannot kill it)."""


class McpError(AbstractRuntimeError, RuntimeError):
    """An MCP server answered with an HTTP error or a JSON-RPC error."""


class McpWorkerError(ValidationError):
    """An MCP worker that cannot be built as asked (unknown toolset, no tools selected)."""


class ToolApprovalError(ValidationError):
    """Approval decisions that cannot be applied (missing, malformed, or given to ``resume`` instead of
    ``resolve_tool_approval``), or no executor to run the approved calls."""


class AttachmentError(AbstractRuntimeError):
    """An ``open_attachment`` call that cannot be answered: becomes the call's error result."""


class EmbeddingsError(AbstractRuntimeError, RuntimeError):
    """An embeddings provider returned an answer that does not fit the request."""


__all__ = [
    "AbstractCoreNotInstalledError", "LLMServerError", "ResponseSchemaError", "MediaError", "ToolSpecError",
    "UnknownToolsetError", "ToolNotFoundError", "ToolExecutorError", "ToolTimeoutError", "McpError", "McpWorkerError",
    "ToolApprovalError", "AttachmentError", "EmbeddingsError",
]
