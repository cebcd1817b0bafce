"""The builtin node catalogue and the collection of node types from every plugin.

``builtin_node_types()`` is what this plugin returns from ``abstractruntime_register_visual_node_types``;
``load_node_types()`` collects the node types of all plugins (builtin catalogue included) through the kernel's
collect helper (one failure policy for every collector), from a plugin manager built exactly as the kernel builds
one, or from a ``Runtime``'s.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from abstractruntime.logs import get_logger

from ..builtins import BUILTINS, NOT_PURE_WHEN_PINLESS
from ..errors import NodeTypeRegistrationError
from ..nodetypes import VisualNodeType
from ..options import PLUGIN_NAME, visualflow_options
from .agent import agent_node_types
from .catalogs import catalog_node_types
from .code import code_node_types
from .core import core_node_types
from .longtail import longtail_node_types
from .memact import memact_node_types
from .tools import tool_node_types

log = get_logger("abstractruntime.visualflow")
HOOK = "abstractruntime_register_visual_node_types"


def builtin_node_types() -> List[VisualNodeType]:
    types = core_node_types()
    have = {t.type for t in types}
    for name, fn in BUILTINS.items():
        if name in have:
            continue
        types.append(VisualNodeType(name, handler=fn, context=True, pure=name not in NOT_PURE_WHEN_PINLESS,
                                    description=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""))
    types += code_node_types() + longtail_node_types() + tool_node_types() + catalog_node_types() \
        + memact_node_types() + agent_node_types()
    return types


def load_node_types(*, runtime: Any = None, plugins: Sequence[Any] = (), settings: Any = None,
                    choices: Optional[Dict[str, str]] = None) -> Dict[str, VisualNodeType]:
    """Node types by name from every installed plugin (the builtin catalogue included).

    Without ``runtime`` a plugin manager is built like the kernel's (``build_plugin_manager`` with the configured
    ``[abstractruntime.plugins]`` settings) plus ``plugins``. Two plugins providing the same type name is an error
    unless ``choices`` (or ``[abstractruntime.plugin_options.visualflow] node_types = {type = "plugin"}``, see
    :class:`~abstractruntime_visualflow.options.VisualFlowOptions`) names the provider to use.
    """
    from abstractruntime.plugins import Hooks, build_plugin_manager
    from abstractruntime.settings import load_settings

    if runtime is not None:
        hooks, cfg = runtime.hooks, runtime.settings
    else:
        cfg = settings if settings is not None else load_settings()
        pm, infos = build_plugin_manager(cfg.plugins, plugins)
        hooks = Hooks(pm, strict=cfg.plugins.strict, infos=infos)
    own = sys.modules[__name__.rsplit(".", 1)[0]]
    provided = hooks.collect(HOOK, VisualNodeType)
    if not hooks.plugin_manager.is_registered(own) and PLUGIN_NAME not in set(cfg.plugins.block):
        # the builtin catalogue, when this plugin is not (yet) registered through its entry point
        provided = [(PLUGIN_NAME, t) for t in builtin_node_types()] + provided
    opts = visualflow_options(runtime=runtime, settings=cfg)
    chosen = dict(opts.node_types)
    chosen.update(choices or {})
    by_name: Dict[str, List[Tuple[str, VisualNodeType]]] = {}
    for provider, item in provided:
        by_name.setdefault(item.type, []).append((provider, item))
    out: Dict[str, VisualNodeType] = {}
    own_types = set()
    for name, candidates in by_name.items():
        if len(candidates) == 1:
            out[name] = candidates[0][1]
            own_types.update([name] if candidates[0][0] == PLUGIN_NAME else [])
            continue
        pick = chosen.get(name)
        match = [c for c in candidates if c[0] == pick]
        if not match:
            providers = ", ".join(p for p, _ in candidates)
            raise NodeTypeRegistrationError(
                f"Node type {name!r} is provided by several plugins ({providers}); choose one in configuration: "
                f"[abstractruntime.plugin_options.visualflow.node_types] {name} = \"<plugin name>\"")
        out[name] = match[0][1]
        own_types.update([name] if match[0][0] == PLUGIN_NAME else [])
    for code_type in code_node_types(opts.code_limits()):  # the builtin code nodes, under the host's limits
        if code_type.type in own_types:
            out[code_type.type] = code_type
    return out


__all__ = ["builtin_node_types", "load_node_types"]
