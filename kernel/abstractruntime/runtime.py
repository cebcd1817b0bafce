"""The kernel's tick loop (start / tick / resume / pause / cancel); steps are written by the RunWriter at barriers
(docs/durability.md). Handlers and stores are plugins'."""

from __future__ import annotations

import functools
import inspect
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import attrs

from . import control
from .commit import PROBE_SECONDS, Mutate, RunWriter
from .descriptors import EffectHandlerDescriptor, legacy_handler
from .effect_execution import RETRY, EffectDispatch, EffectExecutor
from .errors import (ConcurrentModificationError, ConfigurationError, DuplicateProviderError, InvalidTypeError,
    NotFoundError, RunNotWaitingError, RunPausedError, StoreUnavailableError, ValidationError, WaitKeyMismatchError,
    WorkflowSpecError, WorkflowVersionError)
from .ledger_rows import row as _row
from .ledger_rows import status_row as _status_row
from .logs import get_logger
from .models import (Effect, EffectOutcome, RunState, RunStatus, RuntimeConfig, StepPlan, StepRecord, StepStatus,
    WaitReason, WaitState, WorkflowSpec, effect_type_value, utc_now_iso)
from .observation import LedgerSubscriptions
from .paths import set_path
from .plugins import Hooks, PluginInfo, build_plugin_manager, open_store, select_effect_handlers
from .policy import DefaultEffectPolicy, EffectPolicy
from .settings import Settings, load_settings
from .stash import Stash
from .storage.base import Capability, SplitBackend, StoreBackend, backend_for
from .timeutil import now_utc, parse_instant

log = get_logger("abstractruntime")


def _await_privately(awaitable: Any) -> Any:
    """How a sync ``Runtime`` finishes an async handler's or node's awaitable: on a private event loop (an
    ``AsyncRuntime`` replaces ``Runtime.awaiter`` to await it on the host's loop instead; docs/asyncio.md)."""
    import asyncio  # only when a sync runtime meets an async handler or node (start-up stays light)
    import concurrent.futures

    async def wait() -> Any:
        return await awaitable
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called on a loop's thread: not on that loop
        return pool.submit(asyncio.run, wait()).result()


def _check_workflow(workflow: WorkflowSpec, run: RunState) -> None:
    if workflow is not None and workflow.workflow_id != run.workflow_id:  # None: a resume that does not tick
        raise ValidationError(f"run {run.run_id} belongs to workflow '{run.workflow_id}', not "
                              f"'{workflow.workflow_id}': pass the run's own workflow (the run is unchanged)",
                              run_id=run.run_id)
    if workflow is not None and run.workflow_version is not None and workflow.version != run.workflow_version:
        raise WorkflowVersionError(f"run {run.run_id} started with version {run.workflow_version!r} of workflow "
                                   f"'{run.workflow_id}', not {workflow.version!r}: drive it with its own version "
                                   f"(a registry can hold several); the run is unchanged", run_id=run.run_id)


@attrs.define
class DefaultRunContext:
    """The context passed to node handlers: a clock (UTC)."""

    def now_iso(self) -> str:
        return utc_now_iso()


class Runtime:
    """A durable workflow runtime: ``Runtime(run_store=..., ledger_store=...)`` as in 0.4.2, or the configured (else
    default) store. Composed of a RunWriter (every write), an EffectExecutor and LedgerSubscriptions; plugins keep
    state in :attr:`stash` and add methods bound on the instance (docs/architecture.md)."""

    def __init__(
        self,
        *,
        run_store: Any = None,
        ledger_store: Any = None,
        effect_handlers: Optional[Mapping[Any, Callable[..., EffectOutcome]]] = None,
        context: Any = None,
        workflow_registry: Any = None,
        artifact_store: Any = None,
        effect_policy: Optional[EffectPolicy] = None,
        config: Optional[RuntimeConfig] = None,
        chat_summarizer: Any = None,
        settings: Union[None, Settings, Mapping[str, Any]] = None,
        plugins: Sequence[Any] = (),
        sleep: Optional[Callable[[float], None]] = None,
    ) -> None:
        self._settings = load_settings(settings) if not isinstance(settings, Settings) else settings
        self.stash = Stash()
        self.awaiter: Callable[[Any], Any] = _await_privately  #: finishes what async handlers and nodes return
        pm, infos = build_plugin_manager(self._settings.plugins, plugins)
        self._hooks, self._pm = Hooks(pm, strict=self._settings.plugins.strict, infos=infos), pm

        self._owned_backend: Optional[StoreBackend] = None
        if run_store is None and ledger_store is None:
            self._owned_backend = self.open_store(self._settings.store)
            run_store, ledger_store = self._owned_backend.run_store, self._owned_backend.ledger_store
        elif run_store is None or ledger_store is None:
            raise ConfigurationError("Pass both run_store and ledger_store, or neither (the store then comes from "
                                     "configuration)")
        try:  # anything refusing the runtime from here on closes the store it opened
            self._run_store = run_store
            self._ledger_store = ledger_store
            self._backend = backend_for(run_store, ledger_store)
            self._run_locks = self._backend.run_locks if self._backend.supports(Capability.RUN_LOCKS) else None

            selected = select_effect_handlers(self._hooks.effect_handlers(), self._settings.effects)
            self._handlers: Dict[str, EffectHandlerDescriptor] = {t: desc for t, (_p, desc) in selected.items()}
            self._handler_providers: Dict[str, str] = {t: provider for t, (provider, _d) in selected.items()}
            for etype, fn in (effect_handlers or {}).items():
                key = effect_type_value(etype)
                self._handlers[key] = EffectHandlerDescriptor(effect_type=key, handler=legacy_handler(fn))
                self._handler_providers[key] = "host"
            pm.register(EffectDispatch(self._handlers), name="abstractruntime.kernel")
            self._methods: Dict[str, Callable[..., Any]] = {}
            self._bind_plugin_methods()

            self._context = context if context is not None else DefaultRunContext()
            self._workflow_registry = workflow_registry
            self._artifact_store = artifact_store
            self._config = config if config is not None else RuntimeConfig()
            self._limits = self._config.to_limits_dict()
            self._chat_summarizer = chat_summarizer
            self._locks: "weakref.WeakValueDictionary[str, threading.RLock]" = weakref.WeakValueDictionary()
            self._locks_guard = threading.Lock()
            self._subscriptions = LedgerSubscriptions()
            self._writer = RunWriter(runtime=self, backend=self._backend, run_store=run_store,
                                     ledger_store=ledger_store, hooks=self._hooks,
                                     publish=self._subscriptions.publish,  # staging needs one-transaction commits
                                     durability="step" if isinstance(self._backend, SplitBackend)
                                     else self._settings.durability)
            self._effects = EffectExecutor(
                runtime=self, hooks=self._hooks, handlers=self._handlers,
                policy=effect_policy if effect_policy is not None else DefaultEffectPolicy(),
                commit=self._writer.commit, find_prior=self._writer.find_prior,
                sleep=sleep if sleep is not None else (lambda seconds: time.sleep(seconds)),  # looked up per call
                inline_backoff_s=self._settings.inline_backoff_s,
            )
            self._hooks.runtime_created(runtime=self)
        except BaseException:
            self.close()
            raise

    def _bind_plugin_methods(self) -> None:
        """Bind the methods plugins add as instance attributes that keep the function's name, signature (minus
        ``runtime``) and docstring, so ``dir()``, ``help()`` and ``inspect.signature`` show them."""
        for provider, desc in self._hooks.runtime_methods():
            if desc.name in self._methods or hasattr(type(self), desc.name):
                raise DuplicateProviderError(kind="runtime method", name=desc.name, providers=[provider],
                                             hint="It is already defined by the kernel or another plugin.")
            method: Any = functools.update_wrapper(functools.partial(desc.function, self), desc.function)
            signature = inspect.signature(desc.function)
            method.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
            method.__name__ = desc.name
            self._methods[desc.name] = desc.function
            setattr(self, desc.name, method)

    def __getattr__(self, name: str) -> Any:  # only reached for names that are neither kernel nor plugin methods
        hint = " (is the plugin that provides it installed?)" if "_methods" in self.__dict__ else ""
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}{hint}")

    def plugin_methods(self) -> Dict[str, Callable[..., Any]]:
        """The methods plugins added to this runtime, by name (each is also an attribute of the runtime)."""
        return {name: getattr(self, name) for name in sorted(self._methods)}

    # --- construction helpers ---------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Union[None, Settings, Mapping[str, Any], str, Any] = None, *,
                    store: Optional[str] = None, **kwargs: Any) -> "Runtime":
        """Build a runtime from a dict, a TOML file path, or (``None``) the environment; see ``settings``.
        ``store`` (a URL) overrides the configured store."""
        settings = load_settings(config)
        return cls(settings=settings if store is None else attrs.evolve(settings, store=store), **kwargs)

    def open_store(self, url: Optional[str] = None) -> StoreBackend:
        """Open a store backend by URL (``lmdb:///path``, ``memory://``) through the store plugins; without a URL,
        the store a plugin offers as the default (``StoreDescriptor.default_url``)."""
        return open_store(self._hooks.stores(), url, self._settings.store_options)

    def close(self) -> None:
        """Close the store this runtime opened from configuration (stores passed in are the caller's)."""
        if self._owned_backend is not None:
            self._owned_backend.close()
            self._owned_backend = None

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- properties (reference API) ---------------------------------------------------------------------------
    @property
    def run_store(self) -> Any:
        return self._run_store

    @property
    def ledger_store(self) -> Any:
        return self._ledger_store

    @property
    def workflow_registry(self) -> Any:
        return self._workflow_registry

    @property
    def artifact_store(self) -> Any:
        return self._artifact_store

    @property
    def effect_policy(self) -> EffectPolicy:
        return self._effects.policy

    @property
    def backend(self) -> StoreBackend:
        """The store backend steps are committed through (its capabilities and sibling services)."""
        return self._backend

    @property
    def config(self) -> RuntimeConfig:
        return self._config

    @property
    def context(self) -> Any:
        return self._context

    @property
    def chat_summarizer(self) -> Any:
        """The host's chat summariser (``Runtime(chat_summarizer=...)``), or None."""
        return self._chat_summarizer

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def hooks(self) -> Hooks:
        return self._hooks

    def set_workflow_registry(self, registry: Any) -> None:
        self._workflow_registry = registry

    def set_artifact_store(self, store: Any) -> None:
        self._artifact_store = store

    def set_effect_policy(self, policy: EffectPolicy) -> None:
        self._effects.policy = policy

    def plugins(self) -> List[PluginInfo]:
        """Every plugin found: name, distribution, version, status (loaded/failed/blocked/...), error."""
        return list(self._hooks.infos)

    def effect_handler_types(self) -> Dict[str, str]:
        """Installed effect types and the plugin providing each (``"host"`` for ``effect_handlers=``)."""
        return dict(sorted(self._handler_providers.items()))

    # --- store access and the write path (RunWriter) ----------------------------------------------------------
    def _load(self, run_id: str) -> RunState:
        return self._writer.load(run_id)

    def _lock(self, run_id: str) -> threading.RLock:
        with self._locks_guard:
            lock = self._locks.get(run_id)
            if lock is None:
                lock = threading.RLock()
                self._locks[run_id] = lock
            return lock

    def _commit(self, run: Optional[RunState], records: Sequence[StepRecord], **kwargs: Any) -> None:
        self._writer.commit(run, records, **kwargs)

    def commit(self, run: Optional[RunState], records: Sequence[StepRecord] = (), *,
               expected_revision: Optional[int] = None, run_id: Optional[str] = None) -> None:
        """For plugins: check, encode and write ``run`` (may be None: ledger-only) and ``records`` in one store
        commit, through every hook (ledger-record preparation, status and ledger observers). ``expected_revision``
        is the revision the stored run must still have (None: no check, e.g. a new run)."""
        self._writer.commit_for_plugin(run, records, expected_revision=expected_revision, run_id=run_id)

    def update_run(self, run_id: str, mutate: Mutate) -> RunState:
        """For plugins: load the run, apply ``mutate(run)`` and commit it with the ledger records it returns
        (``None``: no change, nothing written), retrying if another writer committed in between."""
        return self._writer.update(run_id, mutate)

    def execute_effect(self, run: RunState, effect: Effect, *, node_id: str, idempotency_key: str,
                       default_next_node: Optional[str] = None) -> EffectOutcome:
        """For handlers that compose effects: execute ``effect`` in-process through the registered handler and
        the ``execute_effect`` wrappers, without ledger rows, reservation or retries (see EffectExecutor)."""
        return self._effects.execute_effect(run, effect, node_id=node_id, idempotency_key=idempotency_key,
                                            default_next_node=default_next_node)

    def subscribe_ledger(self, callback: Callable[[Dict[str, Any]], None], *,
                         run_id: Optional[str] = None) -> Callable[[], None]:
        """Call ``callback(record_dict)`` after every committed ledger record (of ``run_id`` only, if given);
        returns the unsubscribe function. Works with every store; callback exceptions are logged."""
        return self._subscriptions.subscribe(callback, run_id=run_id)

    # --- public API -------------------------------------------------------------------------------------------
    def start(self, *, workflow: WorkflowSpec, vars: Optional[Dict[str, Any]] = None, actor_id: Optional[str] = None,
              session_id: Optional[str] = None, parent_run_id: Optional[str] = None) -> str:
        """Create and checkpoint a RUNNING run at the workflow's entry node. Executes nothing."""
        if workflow.entry_node not in workflow.nodes:
            raise WorkflowSpecError(f"Workflow '{workflow.workflow_id}' has entry node '{workflow.entry_node}', which "
                                    f"is not one of its nodes ({', '.join(sorted(workflow.nodes)) or 'none'})")
        run_vars = dict(vars or {})
        if "_limits" not in run_vars:
            run_vars["_limits"] = dict(self._limits)  # (the config is frozen: its limits computed once)
        run = RunState.new(workflow_id=workflow.workflow_id, entry_node=workflow.entry_node, actor_id=actor_id,
                           session_id=session_id, vars=run_vars, parent_run_id=parent_run_id)
        run.workflow_version = workflow.version
        self._hooks.prepare_new_run(runtime=self, run=run)
        return self._hooks.api_call(self, "start", run.run_id, functools.partial(self._create, run))

    def _create(self, run: RunState) -> str:
        self._writer.commit(run, (), node_id=None, expected_revision=None)
        log.debug("run_started", run_id=run.run_id, workflow=run.workflow_id)
        return run.run_id

    def get_state(self, run_id: str) -> RunState:
        return self._load(run_id)

    def get_ledger(self, run_id: str) -> List[Dict[str, Any]]:
        return self._ledger_store.list(run_id)

    def tick(self, *, workflow: WorkflowSpec, run_id: str, max_steps: int = 100) -> RunState:
        """Execute up to ``max_steps`` steps of a run; returns the state after the last commit.

        A run that another process is ticking on the same embedded store is left alone (its stored state is
        returned): the store's ``run_locks`` say who drives it. Returns after its steps are durable (a barrier)."""
        return self._hooks.api_call(self, "tick", run_id, functools.partial(self._drive, workflow, run_id, max_steps,
                                                                            None))

    def _drive(self, workflow: WorkflowSpec, run_id: str, max_steps: int, resumed: Optional[RunState]) -> RunState:
        with self._lock(run_id):
            locks = self._run_locks
            if locks is not None and not locks.acquire(run_id):
                return self._load(run_id) if resumed is None else self._writer.settle(resumed, strict=True)
            try:
                return self._writer.settle(self._tick(workflow, run_id, max_steps, resumed), strict=bool(resumed))
            finally:
                self._writer.discard(run_id)  # staged by a call that raised: never observed
                if locks is not None:
                    locks.release(run_id)

    def _tick(self, workflow: WorkflowSpec, run_id: str, max_steps: int, resumed: Optional[RunState]) -> RunState:
        run = resumed if resumed is not None else self._writer.load(run_id)
        _check_workflow(workflow, run)
        if run.status.is_terminal or run.is_paused:
            return run
        previous_status = run.status
        if run.status is RunStatus.WAITING:
            if not self._wait_due(run):
                payload = self._hooks.poll_wait(runtime=self, run=run)
                if payload is None or run.waiting is None:
                    return run
                return self.resume(workflow=workflow, run_id=run_id, wait_key=run.waiting.wait_key,
                                   payload=payload, max_steps=max_steps)
            waiting = run.waiting
            run.status = RunStatus.RUNNING
            run.waiting = None
            if waiting is not None and waiting.resume_to_node:
                run.current_node = waiting.resume_to_node
            # not saved here: the next step's commit carries the transition
        debug, quiet = log.enabled(), self._hooks.quiet_steps()  # the per-step event and observers, once a tick
        steps, pace, running = 0, PROBE_SECONDS if self._writer.staging else 0.0, RunStatus.RUNNING
        probe = time.monotonic() + pace
        while steps < max_steps:  # (any number: float("inf") included)
            if steps and time.monotonic() >= probe:
                if self._writer.changed_elsewhere(run):
                    return self._load(run_id)  # cancelled, paused or advanced by someone else: never overwrite it
                probe = time.monotonic() + pace
            steps += 1
            try:
                run = self._step(workflow, run, previous_status, debug, quiet)
            except ConcurrentModificationError:
                return self._load(run_id)
            previous_status = running
            if run.status is not running:
                return run
        return run

    def _wait_due(self, run: RunState) -> bool:
        waiting = run.waiting
        if waiting is None or waiting.reason is not WaitReason.UNTIL or not waiting.until:
            return False
        try:
            return now_utc() >= parse_instant(waiting.until)
        except ValueError:
            return False

    # --- one step ---------------------------------------------------------------------------------------------
    def _step(self, workflow: WorkflowSpec, run: RunState, previous_status: RunStatus, debug: bool,
              quiet: Optional[int] = None) -> RunState:
        node_id = run.current_node
        expected = run.revision
        observed = quiet is None or quiet != self._pm.generation
        if observed:
            self._hooks.before_step(run=run, node_id=node_id)
        try:
            handler = workflow.nodes.get(node_id)
            if handler is None:
                raise NotFoundError(f"Unknown node '{node_id}' in workflow '{workflow.workflow_id}' "
                                    f"(nodes: {', '.join(sorted(workflow.nodes)) or 'none'})")
            plan = handler(run, self._context)
            if type(plan) is not StepPlan and not isinstance(plan, StepPlan):
                plan = self.awaiter(plan) if inspect.isawaitable(plan) else plan  # an async node
                if not isinstance(plan, StepPlan):
                    raise InvalidTypeError(f"Node '{node_id}' returned {type(plan).__name__}, expected a StepPlan")
            output, effect, next_node = plan.complete_output, plan.effect, plan.next_node
            if output is None and effect is None and not next_node:
                raise ValidationError(f"Node '{node_id}' returned no effect and no next_node")
            if output is not None and (effect is not None or next_node):
                other = "effect" if effect is not None else "next_node"
                raise ValidationError(f"Node '{node_id}' returned a StepPlan with both complete_output and {other}: "
                                      f"a plan has one outcome (return complete_output alone to finish the run)")
        except StoreUnavailableError:  # not the node's fault: the tick stops, the next one runs the step again
            raise
        except Exception as exc:  # the node's fault: the run fails, the kernel does not
            return self._fail_node(run, node_id, exc)

        records: Sequence[StepRecord] = ()
        if output is not None:
            run.status, run.output = RunStatus.COMPLETED, output
            records = [_row(run, plan.node_id, StepStatus.COMPLETED, result={"completed": True, "output": output}),
                       _status_row(run, RunStatus.COMPLETED._value_)]
        elif effect is None:
            run.current_node = next_node  # type: ignore[assignment]
        else:
            records = self._effects.run_effect(run, plan)
            if run.waiting is not None and (run.waiting.details or {}).get("kind") == RETRY:
                return self._fail_node(run, node_id, None, wait=run.waiting, records=records)
        run.step += 1
        limits = run.vars.get("_limits")
        if isinstance(limits, dict):  # reference defect 11: the iteration counter never moved
            current = limits.get("current_iteration")
            limits["current_iteration"] = (current if type(current) is int else 0) + 1
        self._writer.stage(run, records, node_id=node_id, expected_revision=expected, previous_status=previous_status)
        if observed:
            self._hooks.after_step(run=run, node_id=node_id, plan=plan, records=records)
        if debug:
            log.debug("step", run_id=run.run_id, node=node_id, step=run.step, status=run.status.value)
        return run

    def _fail_node(self, run: RunState, node_id: str, exc: Optional[Exception], *, wait: Optional[WaitState] = None,
                   records: Sequence[StepRecord] = ()) -> RunState:
        """Fail the node that raised ``exc`` -- or park it in ``wait`` for a durable retry backoff -- from the last good
        state: the node may have half-mutated run.vars. A parked step keeps its step number, so it runs again (when
        the timer is due) under the same idempotency key and continues the attempt count."""
        error = None
        if exc is not None:
            self._hooks.step_error(run=run, node_id=node_id, error=exc)
            message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            error = f"Node '{node_id}' failed: {type(exc).__name__}: {message}"
        failed = self._writer.last_good(run.run_id)
        if failed.revision != run.revision:
            return failed
        previous_status = failed.status
        failed.current_node = node_id
        if wait is not None:
            failed.status, failed.waiting = RunStatus.WAITING, wait
        else:
            failed.waiting = None  # e.g. a due WAIT_UNTIL whose continuation failed
            failed.status, failed.error = RunStatus.FAILED, error
            failed.step += 1
            records = [_row(failed, node_id, StepStatus.FAILED, error=error),
                       _status_row(failed, RunStatus.FAILED.value)]
        self._commit(failed, records, node_id=node_id, expected_revision=run.revision,
                     previous_status=previous_status)
        self._hooks.after_step(run=failed, node_id=node_id, plan=None, records=records)
        if error is not None:
            log.warning("node_failed", run_id=failed.run_id, node=node_id, error=error)
        return failed

    # --- resume / pause / cancel ------------------------------------------------------------------------------
    def resume(
        self,
        *,
        workflow: WorkflowSpec,
        run_id: str,
        wait_key: Optional[str],
        payload: Dict[str, Any],
        max_steps: int = 100,
    ) -> RunState:
        """Deliver ``payload`` to a waiting run and continue it (the waiting node is not executed again). If the
        wait ``wait_key`` names was already resumed (by a driver, say), the run's current state is returned."""
        return self._hooks.api_call(self, "resume", run_id, functools.partial(
            self._resume, workflow, run_id, wait_key, payload, max_steps))

    def _resume(self, workflow: WorkflowSpec, run_id: str, wait_key: Optional[str], payload: Dict[str, Any],
                max_steps: int) -> RunState:
        with self._lock(run_id):
            run = self._load(run_id)
            wait = run.waiting
            if wait_key is not None and (wait is None or wait.wait_key != wait_key) and self._writer.resumed(
                    run_id, wait_key):
                return run  # the transition the caller asks for was made already
            _check_workflow(workflow, run)
            if run.is_paused:
                raise RunPausedError("Run is paused (call resume_run first)", run_id=run_id)
            if run.status is not RunStatus.WAITING or wait is None:
                raise RunNotWaitingError(f"Run is not waiting (status: {run.status.value})", run_id=run_id)
            if wait_key is not None and wait.wait_key is not None and wait_key != wait.wait_key:
                raise WaitKeyMismatchError(run_id=run_id, expected=wait.wait_key, got=wait_key)
            expected = run.revision
            node_id = run.current_node
            payload = self._hooks.prepare_resume_payload(run=run, wait=wait, payload=payload, runtime=self)
            set_path(run.vars, wait.result_key or "_temp.resume_payload", payload)
            records = [
                _row(run, node_id or "unknown", StepStatus.COMPLETED,
                     effect={"type": "resume",
                             "payload": {"wait_reason": wait.reason.value, "wait_key": wait.wait_key,
                                         "resume_to_node": wait.resume_to_node, "result_key": wait.result_key,
                                         "payload": payload},
                             "result_key": None},
                     result={"resumed": True})
            ]
            run.waiting = None
            if wait.resume_to_node is None:
                run.status = RunStatus.COMPLETED
                run.output = {"success": True, "result": payload}
                records.append(_row(run, node_id or "unknown", StepStatus.COMPLETED, result={
                    "completed": True, "via": "resume", "wait_reason": wait.reason.value, "wait_key": wait.wait_key,
                    "output": run.output}))
                records.append(_status_row(run, RunStatus.COMPLETED._value_))
            else:
                run.status = RunStatus.RUNNING
                run.current_node = wait.resume_to_node
            run.step += 1
            self._writer.stage(run, records, node_id=node_id, expected_revision=expected,
                               previous_status=RunStatus.WAITING)
            if run.status is not RunStatus.RUNNING or max_steps <= 0:
                try:
                    return self._writer.settle(run, strict=True)
                finally:
                    self._writer.discard(run_id)
            return self._drive(workflow, run_id, max_steps, run)

    def pause_run(self, run_id: str, *, reason: Optional[str] = None) -> RunState:
        return self._control("pause_run", run_id, functools.partial(control.pause, reason=reason))

    def resume_run(self, run_id: str) -> RunState:
        return self._control("resume_run", run_id, control.unpause)

    def cancel_run(self, run_id: str, *, reason: Optional[str] = None) -> RunState:
        return self._control("cancel_run", run_id, functools.partial(control.cancel, reason=reason))

    def _control(self, name: str, run_id: str, mutate: Mutate) -> RunState:
        return self._hooks.api_call(self, name, run_id, functools.partial(self._writer.update, run_id, mutate))


__all__ = ["Runtime", "DefaultRunContext", "EffectOutcome"]
