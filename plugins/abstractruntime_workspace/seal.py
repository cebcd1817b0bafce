"""Where a run's workspace policy comes from: the host only, sealed when the run starts.

``abstractruntime_prepare_new_run`` builds the run's layers from what the host controls -- the runtime's
configuration (``[abstractruntime.plugin_options.workspace]``), the ``workspace_*`` start variables, and for a child
run the layers of its parent -- and stores them under ``vars["_runtime"]["workspace"]`` with the start values of the
``workspace_*`` variables. That record is checkpointed with the run, so it survives restarts. VisualFlow variable
nodes cannot write ``_``-prefixed variables, and :func:`workspace_for_vars` refuses every path once a
``workspace_*`` variable differs from its start value, so neither a flow nor a node can widen the policy.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import attrs
from attrs import field, frozen

from abstractruntime import StashKey
from abstractruntime.errors import ConfigurationError
from abstractruntime_pluginkit import plugin_options

from .policy import MODES, WORKSPACE_KEYS, RunWorkspace, WorkspaceError, WorkspacePolicy

PLUGIN_NAME = "workspace"
SEAL_KEY = "workspace"  # under vars["_runtime"]
SEAL_VERSION = 1


@frozen
class WorkspaceOptions:
    """``[abstractruntime.plugin_options.workspace]``: a policy for every run of the runtime (the outermost layer;
    start variables can narrow it, never widen it). ``root``, ``access_mode`` (one of :data:`MODES`),
    ``allowed_paths``, ``ignored_paths`` -- the meanings of the ``workspace_*`` variables."""

    root: Optional[str] = None
    access_mode: str = field(default="workspace_only", validator=attrs.validators.in_(MODES))
    allowed_paths: List[str] = field(factory=list)
    ignored_paths: List[str] = field(factory=list)


_OPTIONS = StashKey["WorkspaceOptions"]()


def _options(runtime: Any) -> WorkspaceOptions:
    """The runtime's options, read once (per runtime: they do not change after it was built)."""
    stash = getattr(runtime, "stash", None)
    if stash is None:
        return plugin_options(runtime, PLUGIN_NAME, WorkspaceOptions)
    return stash.setdefault_factory(_OPTIONS, lambda: plugin_options(runtime, PLUGIN_NAME, WorkspaceOptions))


def config_layer(runtime: Any) -> Optional[WorkspacePolicy]:
    """The layer of the runtime's configuration, or None when it constrains nothing."""
    opts = _options(runtime)
    if opts.root is None and not opts.ignored_paths:  # constrains nothing (WorkspacePolicy.active), wherever the cwd
        return None
    try:
        layer = WorkspacePolicy.from_vars({"workspace_root": opts.root, "workspace_access_mode": opts.access_mode,
                                           "workspace_allowed_paths": opts.allowed_paths,
                                           "workspace_ignored_paths": opts.ignored_paths})
    except WorkspaceError as exc:
        raise ConfigurationError(f"plugin_options.{PLUGIN_NAME}: {exc}") from None
    return layer if layer.active else None


_LAYER = StashKey[Optional[WorkspacePolicy]]()
_KEYS = frozenset(WORKSPACE_KEYS)


def _config_layer_once(runtime: Any) -> Optional[WorkspacePolicy]:
    """:func:`config_layer`, built once per runtime (asked at every ``start``: a frozen policy of fixed options)."""
    stash = getattr(runtime, "stash", None)
    if stash is None:
        return config_layer(runtime)
    return stash.setdefault_factory(_LAYER, lambda: config_layer(runtime))


def _normal(value: Any) -> Any:
    """JSON shape (tuples are lists), so a start value compares equal to itself after a trip through a store."""
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _normal(v) for k, v in value.items()}
    return value


def _seal_of(vars: Any) -> Any:
    runtime_ns = vars.get("_runtime") if isinstance(vars, Mapping) else None
    return runtime_ns.get(SEAL_KEY) if isinstance(runtime_ns, Mapping) else None


def _layers_of_run(vars: Mapping[str, Any]) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """``(layer records, error)`` of an existing run (a parent): its seal, else its variables (a run started
    before the seal existed)."""
    seal = _seal_of(vars)
    if seal is None:
        try:
            layer = WorkspacePolicy.from_vars(vars)
        except WorkspaceError as exc:
            return [], str(exc)
        return ([layer.to_record()] if layer.active else []), None
    try:
        return [p.to_record() for p in _sealed_workspace(seal).layers], None
    except WorkspaceError as exc:
        return [], str(exc)


def seal_new_run(runtime: Any, run: Any) -> None:
    """Store the new run's policy under ``vars["_runtime"]["workspace"]`` (replacing whatever the start variables
    held there: only this hook writes it). A run with no policy at all gets no seal."""
    records: List[Dict[str, Any]] = []
    errors: List[str] = []
    config = _config_layer_once(runtime)
    if config is None and not run.parent_run_id and (_KEYS.isdisjoint(run.vars) or all(
            run.vars.get(k) is None for k in WORKSPACE_KEYS)):
        runtime_ns = run.vars.get("_runtime")  # nothing to seal (the common case; see the end of this function)
        if isinstance(runtime_ns, dict):
            runtime_ns.pop(SEAL_KEY, None)
        return
    if config is not None:
        records.append(config.to_record())
    if run.parent_run_id:
        parent = runtime.run_store.load(run.parent_run_id)
        if parent is not None:
            parent_records, error = _layers_of_run(parent.vars)
            records += parent_records
            if error:
                errors.append(f"the parent run's workspace policy is invalid: {error}")
    try:
        own = WorkspacePolicy.from_vars(run.vars)
        if own.active:
            records.append(own.to_record())
    except WorkspaceError as exc:
        errors.append(str(exc))
    unique: List[Dict[str, Any]] = []
    for record in records:
        if record not in unique:
            unique.append(record)
    seal: Dict[str, Any] = {"version": SEAL_VERSION, "layers": unique,
                            "given": {k: _normal(run.vars[k]) for k in WORKSPACE_KEYS if run.vars.get(k) is not None}}
    if errors:
        seal["error"] = "; ".join(errors)
    runtime_ns = run.vars.get("_runtime")
    if not unique and not seal["given"] and not errors:
        # Nothing to seal: the run is not confined, and reading its variables (what an unsealed run does) can only
        # confine it more. Its checkpoint stays as it was (no vars._runtime entry for runs without a workspace).
        if isinstance(runtime_ns, dict):
            runtime_ns.pop(SEAL_KEY, None)  # a forged one in the start variables
        return
    if not isinstance(runtime_ns, dict):
        runtime_ns = run.vars["_runtime"] = {}
    runtime_ns[SEAL_KEY] = seal


def _sealed_workspace(seal: Any) -> RunWorkspace:
    if not isinstance(seal, Mapping) or not isinstance(seal.get("layers"), list) \
            or not isinstance(seal.get("given"), Mapping):
        raise WorkspaceError("the run's sealed workspace policy (vars._runtime.workspace) is malformed; it is "
                             "written when the run starts and must not be changed")
    if seal.get("error"):
        raise WorkspaceError(str(seal["error"]))
    return RunWorkspace(tuple(WorkspacePolicy.from_record(r) for r in seal["layers"]))


def workspace_for_vars(vars: Mapping[str, Any]) -> RunWorkspace:
    """The policy of the run whose variables are ``vars``: the sealed one. Raises :class:`WorkspaceError` when it
    is invalid, or when a ``workspace_*`` variable no longer has the value the run started with (a flow or a node
    tried to change the policy: every path is refused while it differs). A run without a seal (no policy was given,
    started before 0.5, a state built by hand) is read from its variables, as 0.4.2 did: that can only confine a
    run that was not confined."""
    seal = _seal_of(vars)
    if seal is None:
        return RunWorkspace((WorkspacePolicy.from_vars(vars),))
    workspace = _sealed_workspace(seal)
    given = seal["given"]
    for key in WORKSPACE_KEYS:
        now = _normal(vars.get(key))
        if now != given.get(key):
            raise WorkspaceError(
                f"the run variable {key} was changed after the run started ({given.get(key)!r} -> {now!r}); the "
                f"workspace policy is fixed by the host when the run starts, and a flow or a node cannot change it "
                f"(every path is refused while {key} differs from its start value)")
    return workspace


def workspace_for_run(run: Any) -> RunWorkspace:
    """:func:`workspace_for_vars` of ``run.vars``."""
    return workspace_for_vars(run.vars)


__all__ = ["WorkspaceOptions", "config_layer", "seal_new_run", "workspace_for_vars", "workspace_for_run",
           "PLUGIN_NAME", "SEAL_KEY"]
