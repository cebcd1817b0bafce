"""Errors of the VisualFlow plugin (compiler, node types, node handlers).

Every class derives from :class:`abstractruntime.errors.AbstractRuntimeError` and keeps the builtin base the
reference raised (``ValueError`` for compile errors and refused node inputs, ``TypeError`` for wrong types), so
existing ``except`` clauses keep working; the compile errors carry *what* is wrong and *where* (flow id, node id,
edge index).
"""

from __future__ import annotations

from typing import Any, Optional

from abstractruntime.errors import InvalidStateError, InvalidTypeError, ValidationError, WorkflowSpecError


class VisualFlowError(WorkflowSpecError):
    """Base class of the VisualFlow errors (a ``ValueError``)."""


class VisualFlowCompileError(VisualFlowError):
    """A VisualFlow graph cannot be compiled.

    ``code`` names the problem (``missing_node``, ``no_entry``, ``missing_entry``, ``data_cycle``,
    ``duplicate_node``, ``branching``, ``unknown_node_type``, ``missing_subflow_id``, ``reserved_output_key``, ...);
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


class CodeLimitError(CodeExecutionError):
    """A ``code`` / ``function`` node's code went over its time, memory or output limit (``.limit`` names it)."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class CodeRaisedError(CodeExecutionError):
    """A ``code`` / ``function`` node's code raised: ``.error_type`` and ``.error`` are its exception's."""

    def __init__(self, message: str, *, error_type: str, error: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.error = error


class NodeTypeRegistrationError(VisualFlowError):
    """A plugin returned something invalid from ``abstractruntime_register_visual_node_types``, or two plugins
    provide the same node type without configuration choosing one."""


class NodeTypeDefinitionError(NodeTypeRegistrationError):
    """A :class:`~abstractruntime_visualflow.nodetypes.VisualNodeType` is declared inconsistently (no or several of
    ``handler=`` / ``effect=`` / ``step=``, an unknown ``base_input`` or ``error_mode``, an empty type name)."""


class VisualFlowTypeError(InvalidTypeError):
    """A VisualFlow API was given a value of the wrong type (``load_visualflow_json`` of a non-dict,
    ``compile_flow`` of a ``Flow`` not made by ``visual_to_flow``, a pin or effect mapping of the wrong type)."""


class VisualNodeError(ValidationError):
    """A node refused the values it was given (division by zero, an unknown operator, an invalid variable name, a
    loop over its iteration cap, ...). Raised inside a node; the executor turns it into a node failure (the run
    completes with ``{"success": false, "error": <message>}``) or, for effect and ``raise`` nodes, fails the run."""


class NodeOutputError(InvalidTypeError):
    """A node produced an output that is not plain JSON (run state must stay JSON)."""


class NodeDependencyError(InvalidStateError):
    """A node needs an optional package that is not installed (the message names it)."""
