"""Errors of the VisualFlow compiler.

Every compile error subclasses ``ValueError`` (the reference raised plain ``ValueError``), so existing ``except``
clauses keep working; the typed classes carry *what* is wrong and *where* (flow id, node id, edge index).
"""

from __future__ import annotations

from typing import Any, Optional

from abstractruntime.errors import WorkflowSpecError


class VisualFlowError(WorkflowSpecError):
    """Base class of the VisualFlow errors (a ``ValueError``)."""


class VisualFlowCompileError(VisualFlowError):
    """A VisualFlow graph cannot be compiled.

    ``code`` names the problem (``missing_node``, ``no_entry``, ``missing_entry``, ``data_cycle``,
    ``duplicate_node``, ``branching``, ``unknown_node_type``, ``missing_subflow_id``, ...);
    ``flow_id`` / ``node_id`` / ``edge`` say where.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        flow_id: Optional[str] = None,
        node_id: Optional[str] = None,
        edge: Optional[Any] = None,
    ) -> None:
        where = f"VisualFlow '{flow_id}': " if flow_id else ""
        super().__init__(f"{where}{message}", node_id=node_id)
        self.code = code
        self.flow_id = flow_id
        self.edge = edge


class UnknownNodeTypeError(VisualFlowCompileError):
    """Strict mode: a node's type is not provided by any installed node-type plugin."""


class DataCycleError(VisualFlowCompileError):
    """Data edges between pure nodes form a cycle."""


class CodeExecutionError(VisualFlowError):
    """A ``code`` / ``function`` node's code was rejected, or cannot run (no sandbox installed)."""


class NodeTypeRegistrationError(VisualFlowError):
    """A plugin returned something invalid from ``abstractruntime_register_visual_node_types``, or two plugins
    provide the same node type without configuration choosing one."""
