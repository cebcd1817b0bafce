"""The hookspec of the extension point this plugin owns (added to every runtime's plugin manager through the
kernel's ``abstractruntime_add_hookspecs``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, List

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from .nodetypes import VisualNodeType

hookspec = pluggy.HookspecMarker("abstractruntime")


@hookspec
def abstractruntime_register_visual_node_types() -> "List[VisualNodeType]":
    """Collector. Return the VisualFlow node types this plugin provides (:class:`VisualNodeType` descriptors: type
    name, pins, defaults, handler or effect mapping).

    Called when flows are compiled (``load_node_types``), through the kernel's collect helper: a third-party plugin
    whose implementation raises or returns something else is disabled and reported, a builtin one fails. The
    builtin catalogue registers its node types through this hook exactly as a third-party package does.

    .. versionchanged:: 0.5 owned by the ``visualflow`` plugin (it was a kernel hookspec).
    """
