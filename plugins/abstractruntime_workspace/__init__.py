"""Builtin plugin ``workspace``: a run's workspace path policy (reference §15.3): where file tools and file nodes may
read and write (used by the ``abstractcore`` tools and the ``visualflow`` file nodes).

The policy comes **only from the host**, and is sealed when the run starts (:mod:`.seal`):

* ``[abstractruntime.plugin_options.workspace]`` (``root``, ``access_mode``, ``allowed_paths``,
  ``ignored_paths``) -- a policy for every run of the runtime;
* the start variables, as in 0.4.2: ``workspace_root`` -- a directory; relative paths resolve against it (without
  it, against the process's working directory, as in the reference); ``workspace_access_mode`` --
  ``workspace_only`` (default: inside the root), ``workspace_or_allowed`` (inside the root or inside one of
  ``workspace_allowed_paths``) or ``all_except_ignored`` (anywhere); ``workspace_allowed_paths`` -- extra
  directories for ``workspace_or_allowed``; ``workspace_ignored_paths`` -- refused in every mode (relative entries
  resolve against the root);
* for a child run (``parent_run_id``), its parent's sealed policy.

A path must be allowed by every one of these layers, so a child or a start variable can narrow access, never widen
it. Once the run has started, a change of a ``workspace_*`` variable (by a flow or a node) is never obeyed: every
path is refused for the run while the variable differs from its start value. Paths are resolved (``..`` and symbolic
links followed) before they are checked. This is a policy on the paths a tool or node is *given*, not a sandbox: a
tool's own code (or a Python node, which is host code) can still open whatever it likes (run untrusted tools in a
separate process or container).
"""

from __future__ import annotations

from typing import Any

from abstractruntime import hookimpl

from .policy import MODES, WORKSPACE_KEYS, RunWorkspace, WorkspaceError, WorkspacePolicy
from .seal import WorkspaceOptions, config_layer, seal_new_run, workspace_for_run, workspace_for_vars


@hookimpl
def abstractruntime_runtime_created(runtime: Any) -> None:
    """A bad ``[abstractruntime.plugin_options.workspace]`` fails ``Runtime(...)``."""
    config_layer(runtime)


@hookimpl
def abstractruntime_prepare_new_run(runtime: Any, run: Any) -> None:
    """Seal the new run's policy from the host's configuration, start variables and parent run."""
    seal_new_run(runtime, run)


__all__ = ["WorkspacePolicy", "RunWorkspace", "WorkspaceError", "WorkspaceOptions", "MODES", "WORKSPACE_KEYS",
           "workspace_for_run", "workspace_for_vars"]
