"""Builtin plugin ``visualflow``: the VisualFlow compiler (VisualFlow JSON -> ``WorkflowSpec``), its executor and
the builtin node catalogue.

The catalogue is contributed through ``abstractruntime_register_visual_node_types`` -- the same hook a third-party
package implements to add node types (see ``docs/visualflow.md``). Reference import paths:
``abstractruntime.visualflow_compiler`` (and ``.compiler``, ``.visual.models``, ``.visual.executor``,
``.visual.builtins``, ``.visual.agent_ids``) re-export from here.
"""

from __future__ import annotations

from typing import Any, List

from abstractruntime import hookimpl

from abstractruntime_pluginkit.lazy import lazy_exports

from . import hookspecs
from .options import VisualFlowOptions, visualflow_options

# The compiler, executor and catalogue are imported on first use: every plugin package is imported whenever a
# runtime is built.
__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["agent_workflow_specs", "default_react_workflow", "register_agent_workflows"], ".agent_react"),
    **dict.fromkeys(["builtin_node_types", "load_node_types"], ".catalogue"),
    **dict.fromkeys(["compile_flow", "compile_visualflow", "compile_visualflow_listeners", "compile_visualflow_tree",
                     "listener_workflow_id"], ".compiler"),
    **dict.fromkeys(["blocking_run", "drive", "start_listeners"], ".drive"),
    **dict.fromkeys(["CodeExecutionError", "DataCycleError", "NodeDependencyError", "NodeOutputError",
                     "NodeTypeDefinitionError", "NodeTypeRegistrationError", "UnknownNodeTypeError",
                     "VisualFlowCompileError", "VisualFlowError", "VisualFlowTypeError", "VisualNodeError"], ".errors"),
    **dict.fromkeys(["NodeContext", "visual_to_flow"], ".executor"),
    **dict.fromkeys(["Flow", "FlowEdge", "FlowNode"], ".flow"),
    **dict.fromkeys(["VisualEdge", "VisualFlow", "VisualNode", "load_visualflow_json"], ".models"),
    **dict.fromkeys(["EffectMapping", "Pin", "VisualNodeType"], ".nodetypes"),
})


abstractruntime_requires = ("workspace",)  # the read_file / write_file nodes


@hookimpl
def abstractruntime_add_hookspecs(pluginmanager: Any) -> None:
    """The node-type extension point is this plugin's: ``abstractruntime_register_visual_node_types``."""
    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def abstractruntime_runtime_created(runtime: Any) -> None:
    """A bad ``[abstractruntime.plugin_options.visualflow]`` fails ``Runtime(...)``."""
    visualflow_options(runtime=runtime)


@hookimpl
def abstractruntime_register_visual_node_types() -> List[Any]:
    """The builtin catalogue, registered exactly as a third-party node-type plugin registers its types."""
    from .catalogue import builtin_node_types

    return builtin_node_types()


__all__ = [
    "Flow", "FlowNode", "FlowEdge", "VisualFlow", "VisualNode", "VisualEdge", "load_visualflow_json",
    "visual_to_flow", "compile_flow", "compile_visualflow", "compile_visualflow_tree",
    "compile_visualflow_listeners", "listener_workflow_id", "VisualNodeType", "EffectMapping", "Pin",
    "NodeContext", "load_node_types", "builtin_node_types", "drive", "blocking_run", "start_listeners",
    "VisualFlowError", "VisualFlowCompileError", "UnknownNodeTypeError", "DataCycleError", "CodeExecutionError",
    "NodeTypeRegistrationError", "NodeTypeDefinitionError", "VisualFlowTypeError", "VisualNodeError",
    "NodeOutputError", "NodeDependencyError", "VisualFlowOptions",
    "default_react_workflow", "agent_workflow_specs", "register_agent_workflows",
]
