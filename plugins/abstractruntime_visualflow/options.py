"""The options of the ``visualflow`` plugin, ``[abstractruntime.plugin_options.visualflow]``, read through the
project's one helper (:func:`abstractruntime_pluginkit.plugin_options`, cached per runtime, or
:func:`~abstractruntime_pluginkit.structure_options` when there is no runtime; ``abstractruntime.settings``
forwards its functions of the same names to them)."""

from __future__ import annotations

from typing import Any, Dict

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

    Unknown keys are refused with a ``ConfigurationError`` listing the valid ones.
    """

    node_types: Dict[str, str] = field(factory=dict)


def visualflow_options(*, runtime: Any = None, settings: Any = None) -> VisualFlowOptions:
    """The options of ``runtime`` (parsed once per runtime), else those of ``settings`` (a kernel ``Settings``)."""
    if runtime is not None:
        return plugin_options(runtime, PLUGIN_NAME, VisualFlowOptions)
    raw = settings.options_for(PLUGIN_NAME) if hasattr(settings, "options_for") else {}
    return structure_options(VisualFlowOptions, raw, where=f"plugin_options.{PLUGIN_NAME}")


__all__ = ["VisualFlowOptions", "visualflow_options", "PLUGIN_NAME"]
