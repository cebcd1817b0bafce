"""Every hookspec of the kernel (the reference, with examples and the exact failure policies: docs/hooks.md).

Collectors (``abstractruntime_register_*``) return lists of frozen descriptors, collected per plugin through
pluggy (``Hooks.collect``). Observers' results are ignored and their exceptions logged (raised in strict mode).
Work hooks take part in what the kernel does; their exceptions propagate. Any routine of a plugin named
``abstractruntime_*`` is an implementation; one matching no hookspec is a load failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

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
    """Collector. The effect handlers this plugin provides (called once per ``Runtime``). Two plugins providing one
    effect type is an error unless the configuration's ``[effects]`` table names the plugin to use."""


@hookspec
def abstractruntime_register_stores() -> "List[StoreDescriptor]":
    """Collector. The store backends this plugin provides; names and URL schemes must be unique. Import heavy
    dependencies inside the descriptor's factory, not at module import."""


@hookspec
def abstractruntime_register_runtime_methods() -> "List[RuntimeMethodDescriptor]":
    """Collector. Methods this plugin adds to ``Runtime``: ``runtime.<name>(...)`` calls
    ``descriptor.function(runtime, ...)``. Names must be unique and must not shadow a kernel attribute."""


@hookspec(historic=True)
def abstractruntime_add_hookspecs(pluginmanager: "pluggy.PluginManager") -> None:
    """Work. Add the hookspecs of an extension point this plugin owns (``pluginmanager.add_hookspecs(module)``).
    Historic: called for each plugin as it is registered, before any other hook, so plugins registered earlier or
    later may implement the new hooks (the ``visualflow`` plugin adds its node-type hook this way)."""


@hookspec
def abstractruntime_register_cli_commands() -> "List[CliCommandDescriptor]":
    """Collector. Return subcommands of the ``abstractruntime`` command line (e.g. ``runs``, ``ledger``)."""


@hookspec
def abstractruntime_prepare_ledger_records(
    runtime: "Runtime", run_id: str, records: "List[StepRecord]"
) -> "Optional[Precondition]":
    """Work. Ledger records of ``run_id`` are about to be committed, in this order; implementations may set
    fields on them (the provenance plugin sets ``prev_hash``, ``record_hash`` and ``signature``).

    Called inside the run's single-writer section just before the records are encoded, once per run per commit.
    Raising aborts the commit: nothing is written. It may return a *precondition* (``precondition(view)``, see
    ``StepCommit.preconditions``) that the store checks inside its write transaction."""


@hookspec
def abstractruntime_prepare_new_run(runtime: "Runtime", run: "RunState") -> None:
    """Work. ``start`` built a new run that is about to be checkpointed for the first time; implementations may
    fill in ``run.vars`` (the abstractcore plugin records the configured provider and model in ``vars._runtime``).
    Raising aborts ``start``: nothing is written."""


@hookspec(firstresult=True)
def abstractruntime_execute_effect(call: "EffectCall") -> "Optional[EffectOutcome]":
    """Execute one effect attempt and return its outcome.

    The kernel's own implementation (registered last) dispatches to the handler registered for
    ``call.effect.type``. Plugins wrap it with ``@hookimpl(wrapper=True)`` to observe or alter execution
    (evidence capture, provenance): ``outcome = yield`` returns the inner outcome, and the wrapper returns the
    outcome to use. A wrapper that raises fails the attempt like a handler that raises.
    """


@hookspec(firstresult=True)
def abstractruntime_prepare_resume_payload(
    run: "RunState", wait: "WaitState", payload: "Dict[str, Any]", runtime: "Runtime"
) -> "Optional[Dict[str, Any]]":
    """Work. Reshape the payload delivered by ``Runtime.resume`` before it is stored and ledgered.

    Called once per resume with the waiting run, its wait and the payload given by the caller. Return a
    replacement payload, or None to keep it. The first non-None result wins (e.g. the subworkflows plugin turns
    a child's output into a tool-result envelope for a parent that asked for ``wrap_as_tool_result``). A
    ``wrapper=True`` implementation sees the final payload (the evidence plugin records resumed tool results so).
    """


@hookspec(firstresult=True)
def abstractruntime_poll_wait(runtime: "Runtime", run: "RunState") -> "Optional[Dict[str, Any]]":
    """Work. ``tick`` met a waiting, unpaused run whose wait is not a due timer: can it be resumed now?

    Return the payload to resume it with (``tick`` then calls ``resume`` with the stored wait key), or None to
    leave it waiting. The first non-None result wins. The subworkflows plugin answers for a parent whose child has
    finished, so a wake-up missed while the parent was paused or the process crashed is delivered by the next
    tick (the scheduler ticks such runs).
    """


@hookspec
def abstractruntime_runtime_created(runtime: "Runtime") -> None:
    """Work hook. Called once at the end of ``Runtime(...)``, when its stores, effect handlers, runtime methods and
    settings are in place: a plugin checks its ``plugin_options`` here (and prepares what it needs), so a bad
    configuration fails at construction instead of at the first step. Raising refuses the runtime: the store the
    runtime opened is closed and the exception propagates out of the constructor. Do not start threads or do
    long I/O here.
    """


@hookspec
def abstractruntime_fault_point(point: str, run_id: str) -> None:
    """Test seam. Called at each durability boundary; an implementation may raise (or kill the process) there to
    prove what survives a crash at that point. Points: ``"commit:before"`` (a commit is about to be written),
    ``"commit:after"`` (it was written, observers not yet told), ``"effect:after-execute"`` (a side effect ran,
    its outcome is not yet committed). Production code never implements it.
    """


@hookspec
def abstractruntime_before_step(run: "RunState", node_id: str) -> None:
    """Observer. A node is about to be executed for ``run``: the last checkpoint, except that a due
    ``WAIT_UNTIL`` has already been cleared (the run is RUNNING at its ``resume_to_node``)."""


@hookspec
def abstractruntime_after_step(
    run: "RunState", node_id: str, plan: "Optional[StepPlan]", records: "Sequence[StepRecord]"
) -> None:
    """Observer. A step was committed: ``run`` is the new checkpoint, ``records`` the ledger rows it wrote;
    ``plan`` is None when the step did not produce a plan (the node failed)."""


@hookspec
def abstractruntime_step_error(run: "RunState", node_id: str, error: BaseException) -> None:
    """Observer. A node raised, was unknown, or returned no valid ``StepPlan`` (before the run is marked FAILED)."""


@hookspec
def abstractruntime_run_status_changed(run: "RunState", previous_status: "RunStatus", runtime: "Runtime") -> None:
    """Observer. A committed checkpoint changed the run's status (e.g. running -> waiting). ``runtime`` committed
    it, so a plugin can act on other runs. Implementations may omit parameters they do not use."""


@hookspec
def abstractruntime_ledger_appended(run_id: str, records: "Sequence[StepRecord]") -> None:
    """Observer. Ledger records were committed for ``run_id`` (in append order)."""
