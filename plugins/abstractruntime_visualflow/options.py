"""The options of the ``visualflow`` plugin, ``[abstractruntime.plugin_options.visualflow]``, read through the
project's one helper (:func:`abstractruntime_pluginkit.plugin_options`, cached per runtime, or
:func:`~abstractruntime_pluginkit.structure_options` when there is no runtime; ``abstractruntime.settings``
forwards its functions of the same names to them)."""

from __future__ import annotations

from typing import Any, Dict

import attrs
from attrs import field, frozen

from abstractruntime_pluginkit import plugin_options, structure_options

PLUGIN_NAME = "visualflow"


@frozen
class VisualFlowOptions:
    """``[abstractruntime.plugin_options.visualflow]``.

    * ``node_types`` -- a table ``{node type: plugin name}`` choosing the provider of a node type that several
      installed plugins provide (default: empty; two providers of one type are then a
      :class:`~abstractruntime_visualflow.errors.NodeTypeRegistrationError`)::

          [abstractruntime.plugin_options.visualflow.node_types]
          concat = "my_plugin"

    * ``code_timeout_s`` (default 5), ``code_memory_mb`` (default 256, at least 32), ``code_max_output_bytes``
      (default 1,000,000) -- the limits of every ``code`` / ``function`` node run (wall-clock time, address space,
      size of the JSON result); a node's ``data.timeoutS`` / ``memoryMb`` / ``maxOutputBytes`` can only lower them.

    Unknown keys are refused with a ``ConfigurationError`` listing the valid ones.
    """

    node_types: Dict[str, str] = field(factory=dict)
    code_timeout_s: float = field(default=5.0, validator=attrs.validators.gt(0))
    code_memory_mb: int = field(default=256, validator=attrs.validators.ge(32))
    code_max_output_bytes: int = field(default=1_000_000, validator=attrs.validators.ge(1))

    def code_limits(self) -> Any:
        """The :class:`~abstractruntime_visualflow.code_sandbox.CodeLimits` these options set."""
        from .code_sandbox import CodeLimits

        return CodeLimits(timeout_s=self.code_timeout_s, memory_mb=self.code_memory_mb,
                          max_output_bytes=self.code_max_output_bytes)


def visualflow_options(*, runtime: Any = None, settings: Any = None) -> VisualFlowOptions:
    """The options of ``runtime`` (parsed once per runtime), else those of ``settings`` (a kernel ``Settings``)."""
    if runtime is not None:
        return plugin_options(runtime, PLUGIN_NAME, VisualFlowOptions)
    raw = settings.options_for(PLUGIN_NAME) if hasattr(settings, "options_for") else {}
    return structure_options(VisualFlowOptions, raw, where=f"plugin_options.{PLUGIN_NAME}")


__all__ = ["VisualFlowOptions", "visualflow_options", "PLUGIN_NAME"]
