"""Every hookspec of the kernel; the reference, with examples and the failure policies, is docs/hooks.md.
Collectors return descriptors; observers' exceptions are logged (raised in strict mode); work hooks' propagate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from .descriptors import CliCommandDescriptor, EffectCall, EffectHandlerDescriptor, RuntimeMethodDescriptor
    from .descriptors import StoreDescriptor
    from .models import EffectOutcome, RunState, RunStatus, StepPlan, StepRecord, WaitState
    from .runtime import Runtime
    from .storage.base import Precondition

PROJECT = "abstractruntime"
PREFIX = PROJECT + "_"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def abstractruntime_register_effect_handlers() -> "List[EffectHandlerDescriptor]":
    """Collector. The effect handlers this plugin provides (duplicates: configuration's ``[effects]`` chooses)."""


@hookspec
def abstractruntime_register_stores() -> "List[StoreDescriptor]":
    """Collector. The store backends this plugin provides; names and URL schemes must be unique."""


@hookspec
def abstractruntime_register_runtime_methods() -> "List[RuntimeMethodDescriptor]":
    """Collector. Methods this plugin adds to ``Runtime``: ``runtime.<name>(...)`` calls ``function(runtime, ...)``."""


@hookspec(historic=True)
def abstractruntime_add_hookspecs(pluginmanager: "pluggy.PluginManager") -> None:
    """Work (historic). Add the hookspecs of an extension point this plugin owns (``pluginmanager.add_hookspecs``)."""


@hookspec
def abstractruntime_register_cli_commands() -> "List[CliCommandDescriptor]":
    """Collector. Return subcommands of the ``abstractruntime`` command line (e.g. ``runs``, ``ledger``)."""


@hookspec
def abstractruntime_prepare_ledger_records(
    runtime: "Runtime", run_id: str, records: "List[StepRecord]"
) -> "Optional[Precondition]":
    """Work. Records of ``run_id`` are about to be committed; implementations may set fields on them and return a
    precondition the store checks in its write transaction. Raising aborts the commit: nothing is written."""


@hookspec
def abstractruntime_prepare_new_run(runtime: "Runtime", run: "RunState") -> None:
    """Work. ``start`` built ``run`` (not yet written); implementations may fill in ``run.vars``. Raising aborts it."""


@hookspec(firstresult=True)
def abstractruntime_execute_effect(call: "EffectCall") -> "Optional[EffectOutcome]":
    """Work. Execute one effect attempt and return its outcome; the kernel's implementation (last) runs the handler,
    plugins wrap it (``@hookimpl(wrapper=True)``: ``outcome = yield``). Raising fails the attempt."""


@hookspec(firstresult=True)
def abstractruntime_api_call(runtime: "Runtime", name: str, run_id: "Optional[str]", call: "Callable[[], Any]") -> Any:
    """Work. Around each API call (``start``, ``tick``, ``resume``, ``pause_run``, ``resume_run``, ``cancel_run``):
    the kernel's implementation (last) returns ``call()``; plugins wrap it (``result = yield``: spans, timing)."""


@hookspec(firstresult=True)
def abstractruntime_prepare_resume_payload(
    run: "RunState", wait: "WaitState", payload: "Dict[str, Any]", runtime: "Runtime"
) -> "Optional[Dict[str, Any]]":
    """Work. Reshape the payload of ``Runtime.resume`` before it is stored: a replacement, or None to keep it (the
    first non-None result wins)."""


@hookspec(firstresult=True)
def abstractruntime_poll_wait(runtime: "Runtime", run: "RunState") -> "Optional[Dict[str, Any]]":
    """Work. ``tick`` met a waiting, unpaused run whose wait is not a due timer: the payload to resume it with, or
    None to leave it waiting (the first non-None result wins)."""


@hookspec
def abstractruntime_runtime_created(runtime: "Runtime") -> None:
    """Work. Called once at the end of ``Runtime(...)``: a plugin checks its ``plugin_options``. Raising refuses the
    runtime (its store is closed, the exception propagates). No threads or long I/O here."""


@hookspec
def abstractruntime_fault_point(point: str, run_id: str) -> None:
    """Test seam. Called at each durability boundary (``"commit:before"``, ``"commit:after"``,
    ``"effect:after-execute"``); raising there shows what survives a crash. Production code never implements it."""


@hookspec
def abstractruntime_before_step(run: "RunState", node_id: str) -> None:
    """Observer. A node is about to be executed for ``run`` (the last checkpoint, a due wait already cleared)."""


@hookspec
def abstractruntime_after_step(
    run: "RunState", node_id: str, plan: "Optional[StepPlan]", records: "Sequence[StepRecord]"
) -> None:
    """Observer. A step was committed: the new checkpoint and its rows; ``plan`` is None if the node failed."""


@hookspec
def abstractruntime_step_error(run: "RunState", node_id: str, error: BaseException) -> None:
    """Observer. A node raised, was unknown, or returned no valid ``StepPlan`` (before the run is marked FAILED)."""


@hookspec
def abstractruntime_run_status_changed(run: "RunState", previous_status: "RunStatus", runtime: "Runtime") -> None:
    """Observer. A committed checkpoint changed the run's status (e.g. running -> waiting); ``runtime`` committed it."""


@hookspec
def abstractruntime_ledger_appended(run_id: str, records: "Sequence[StepRecord]") -> None:
    """Observer. Ledger records were committed for ``run_id`` (in append order)."""
