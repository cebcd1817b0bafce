"""The scheduler: drives every run that can make progress, with a small pool of worker threads.

What it drives, with no host code:

* runs whose ``WAIT_UNTIL`` is due -- found through the store's timer index (``list_due_wait_until``);
* RUNNING runs -- e.g. listeners resumed by an ``EMIT_EVENT`` from inside another workflow (resumed with
  ``max_steps=0``), parents woken when their child finishes, runs left RUNNING by a crash or by ``max_steps``;
* a run becomes runnable -> the poller is woken at once through the ``run_status_changed`` hook (polling every
  ``poll_interval_s`` remains the fallback that guarantees progress).

Each worker drives one run at a time, one step per ``tick``, so ``stop()`` returns after the step in flight and
leaves every run resumable. A run is never driven by two workers: the scheduler tracks runs in flight, and the
runtime's per-run lock and revision check refuse a second writer anyway.
"""

from __future__ import annotations

import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attrs
from attrs import define, field, frozen

from abstractruntime import RunState, RunStatus, StashKey, WaitReason, WorkflowSpec
from abstractruntime_pluginkit.event_keys import build_event_wait_key
from abstractruntime.errors import (
    CorruptStoreError,
    InvalidStateError,
    InvalidTypeError,
    RunNotWaitingError,
    UnknownRunError,
    ValidationError,
)
from abstractruntime.logs import get_logger
from abstractruntime.models import utc_now_iso
from abstractruntime_pluginkit import attach_driver, plugin_options, spec_for_run
from abstractruntime_pluginkit.registry import WorkflowRegistry
from abstractruntime_pluginkit.queries import answers_run_queries
from abstractruntime_storekit.integrity import CorruptRecord, collect_skipped

log = get_logger("abstractruntime.scheduler")

#: the schedulers attached to a runtime (woken by the run_status_changed hook)
_ATTACHED = StashKey["weakref.WeakSet[Scheduler]"]()
_QUEUE_PER_WORKER = 8  # runs handed to the pool per worker thread before the poller waits for one to finish


@frozen
class SchedulerOptions:
    """``[abstractruntime.plugin_options.scheduler]``; arguments given to ``Scheduler(...)`` win over them."""

    workers: int = field(default=2, validator=attrs.validators.ge(1))
    poll_interval_s: float = field(default=1.0, validator=attrs.validators.gt(0))


def notify_runnable(runtime: Any, run_id: str) -> None:
    stash = getattr(runtime, "stash", None)
    for scheduler in list(stash.get(_ATTACHED, ()) if stash is not None else ()):
        scheduler._wake()


@define
class SchedulerStats:
    runs_resumed: int = 0
    runs_failed: int = 0
    poll_cycles: int = 0
    last_poll_at: Optional[str] = None
    errors: List[str] = field(factory=list)
    #: runs the last poll left out because their stored checkpoint cannot be decoded (CorruptStoreError); the
    #: healthy runs are driven all the same. ``abstractruntime store check`` lists every damaged record.
    corrupt_runs: List[str] = field(factory=list)
    #: how many times a poll skipped a corrupt run (one per run per poll)
    corrupt_runs_skipped: int = 0


class Scheduler:
    """Reference-compatible scheduler (``abstractruntime.scheduler.Scheduler``) with a worker pool."""

    def __init__(
        self,
        *,
        runtime: Any,
        registry: WorkflowRegistry,
        poll_interval_s: Optional[float] = None,
        max_errors_kept: int = 100,
        on_run_resumed: Optional[Callable[[RunState], None]] = None,
        on_run_failed: Optional[Callable[[str, BaseException], None]] = None,
        workers: Optional[int] = None,
        batch_size: int = 500,
    ) -> None:
        if not answers_run_queries(runtime.run_store):
            raise InvalidTypeError(
                f"Scheduler needs a QueryableRunStore (list_runs, list_due_wait_until, list_children); "
                f"{type(runtime.run_store).__name__} is not one"
            )
        options = plugin_options(runtime, "scheduler", SchedulerOptions)
        self.runtime = runtime
        self.registry = registry
        # explicit arguments win over [abstractruntime.plugin_options.scheduler], which wins over the defaults
        self.poll_interval_s = float(poll_interval_s if poll_interval_s is not None else options.poll_interval_s)
        self.max_errors_kept = max_errors_kept
        self.on_run_resumed = on_run_resumed
        self.on_run_failed = on_run_failed
        self.workers = max(1, int(workers if workers is not None else options.workers))
        self.batch_size = batch_size
        self._stats = SchedulerStats()
        self._stats_lock = threading.Lock()
        self._in_flight: set = set()
        self._in_flight_lock = threading.Lock()
        self._failed_at: Dict[str, int] = {}  # run_id -> revision that failed (skip until the run changes)
        #: waiting runs polled this round and not ready (run_id -> revision): the next polls take the others first,
        #: so a parent whose wake-up was missed is reached however many parents wait for children still running
        self._unready: Dict[str, int] = {}
        self._polled_at = 0.0  # when the waiting runs were last listed (at most once per poll_interval_s)
        self._stop = threading.Event()
        self._wake_event = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._pool: Optional[ThreadPoolExecutor] = None
        if runtime.workflow_registry is None:
            runtime.set_workflow_registry(registry)  # effects (subworkflows, events) find workflows here
        runtime.stash.setdefault_factory(_ATTACHED, weakref.WeakSet).add(self)
        attach_driver(runtime, self)  # finished children wake their parents now (the subworkflows plugin)

    # --- lifecycle --------------------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stats(self) -> SchedulerStats:
        return self._stats

    def start(self) -> None:
        if self.is_running:
            raise InvalidStateError("Scheduler is already running")
        self._stop.clear()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="abstractruntime-worker")
        self._thread = threading.Thread(target=self._loop, name="abstractruntime-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling and wait for the steps in flight to finish (each worker stops after its current step)."""
        if not self.is_running:
            return
        self._stop.set()
        self._wake_event.set()
        self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._thread = None
        self._pool = None

    def _wake(self) -> None:
        self._wake_event.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake_event.clear()
            with self._in_flight_lock:
                busy = len(self._in_flight)
            free = self.workers * _QUEUE_PER_WORKER - busy
            if free > 0:  # only look for as much work as the pool can soon take; workers wake us when done
                try:
                    self._poll(submit=True, limit=busy + free)
                except Exception as exc:  # the loop must survive a bad poll (store hiccup, ...)
                    self._record_error(f"poll failed: {type(exc).__name__}: {exc}")
            self._wake_event.wait(self.poll_interval_s)

    # --- finding work -----------------------------------------------------------------------------------------
    def _candidates(self, limit: int) -> List[RunState]:
        store = self.runtime.run_store
        now = utc_now_iso()
        # waits that a plugin may declare ready on tick (abstractruntime_poll_wait): a parent whose child finished
        queries = [lambda: store.list_due_wait_until(now_iso=now, limit=limit),
                   lambda: store.list_runs(status=RunStatus.RUNNING, limit=limit)]
        if time.monotonic() - self._polled_at >= self.poll_interval_s:  # a fallback: not at every wake-up
            self._polled_at = time.monotonic()
            queries += [lambda reason=reason: store.list_runs(status=RunStatus.WAITING, wait_reason=reason,
                                                              limit=max(limit, self.batch_size))
                        for reason in (WaitReason.SUBWORKFLOW, WaitReason.JOB)]
        found: List[RunState] = []
        with collect_skipped() as skipped:  # a corrupt run is left out by the store's queries, and counted here
            for query in queries:
                try:
                    found.extend(query())
                except CorruptStoreError as exc:  # a store that cannot skip it: the other queries still count
                    self._record_error(f"poll query failed: {exc}")
                    if exc.run_id:
                        skipped.append(CorruptRecord(store="", kind="checkpoint", run_id=exc.run_id,
                                                     error=exc.message))
        self._note_corrupt(skipped)
        seen, out, pollable, unready = set(), [], [], 0
        with self._in_flight_lock:
            polled = dict(self._unready)
        for run in found:
            if run.run_id in seen or run.is_paused:
                continue
            seen.add(run.run_id)
            if self._failed_at.get(run.run_id) == run.revision:
                continue  # failed at this revision already (e.g. workflow not registered): wait for a change
            if run.status is RunStatus.WAITING and run.waiting is not None and run.waiting.until is None:
                if polled.get(run.run_id) == run.revision:
                    unready += 1  # polled this round already: the others first
                elif len(pollable) < limit:
                    pollable.append(run)
                continue
            out.append(run)
        if not pollable and unready:  # every waiting run was polled this round: the next round starts
            with self._in_flight_lock:
                self._unready.clear()
        return out + pollable

    def _note_not_ready(self, run: RunState) -> None:
        """A waiting run polled and found not ready: the other waiting runs are polled before it again."""
        if run.status is RunStatus.WAITING:
            with self._in_flight_lock:
                self._unready[run.run_id] = run.revision

    def _note_corrupt(self, skipped: List[CorruptRecord]) -> None:
        corrupt = sorted({r.run_id for r in skipped if r.run_id})
        with self._stats_lock:
            new = [r for r in corrupt if r not in self._stats.corrupt_runs]
            self._stats.corrupt_runs = corrupt
            self._stats.corrupt_runs_skipped += len(corrupt)
        for run_id in new:  # once, when it is first seen (the store's warning names the store and the error)
            self._record_error(f"Run {run_id}: skipped, its stored checkpoint is corrupt "
                               f"({next(r.error for r in skipped if r.run_id == run_id)})")

    def poll_once(self) -> int:
        """One cycle, synchronously: drive every runnable run; returns how many were driven."""
        self._polled_at = 0.0  # asked for: the waiting runs too
        return self._poll(submit=False, limit=self.batch_size)

    def _poll(self, *, submit: bool, limit: int) -> int:
        with self._stats_lock:
            self._stats.poll_cycles += 1
            self._stats.last_poll_at = utc_now_iso()
        hook = getattr(self.runtime.hooks.plugin_manager.hook, "abstractruntime_driver_poll", None)
        if hook is not None and hook.get_hookimpls():  # runs that are due now (the schedules plugin's fires)
            try:
                hook(runtime=self.runtime, registry=self.registry)
            except Exception as exc:
                self._record_error(f"driver poll failed: {type(exc).__name__}: {exc}")
        count = 0
        for run in self._candidates(limit):
            if self._stop.is_set() and submit:
                break
            with self._in_flight_lock:
                if run.run_id in self._in_flight:
                    continue
                self._in_flight.add(run.run_id)
            count += 1
            if submit and self._pool is not None:
                try:
                    self._pool.submit(self._drive, run)
                except RuntimeError:  # pool shut down by stop()
                    self._release(run.run_id)
                    break
            else:
                self._drive(run)
        return count

    def _release(self, run_id: str) -> None:
        with self._in_flight_lock:
            self._in_flight.discard(run_id)

    def _drive(self, run: RunState) -> None:
        """Tick one run step by step until it stops being RUNNING (or the scheduler stops)."""
        try:
            spec = spec_for_run(self.registry, run)
            state = run
            while True:
                before = state.revision
                state = self.runtime.tick(workflow=spec, run_id=run.run_id, max_steps=1)
                if state.status is not RunStatus.RUNNING or self._stop.is_set():
                    break
                if state.revision == before:  # no step was taken: another process is driving this run
                    break
            if state.revision == run.revision:  # a pollable wait that was not ready: nothing happened
                self._note_not_ready(run)
                return
            with self._stats_lock:
                self._stats.runs_resumed += 1
            self._failed_at.pop(run.run_id, None)
            if self.on_run_resumed is not None:
                try:
                    self.on_run_resumed(state)
                except Exception:
                    pass
        except Exception as exc:
            self._failed_at[run.run_id] = run.revision
            with self._stats_lock:
                self._stats.runs_failed += 1
            self._record_error(f"Run {run.run_id}: {exc}")
            if self.on_run_failed is not None:
                try:
                    self.on_run_failed(run.run_id, exc)
                except Exception:
                    pass
        finally:
            self._release(run.run_id)
            self._wake_event.set()  # a worker is free: let the poller refill it

    def _record_error(self, message: str) -> None:
        log.warning("scheduler_error", error=message)
        with self._stats_lock:
            self._stats.errors.append(f"{utc_now_iso()}: {message}")
            del self._stats.errors[: max(0, len(self._stats.errors) - self.max_errors_kept)]

    # --- host API (reference) ---------------------------------------------------------------------------------
    def _waiting(self, run_id: str) -> Tuple[RunState, WorkflowSpec]:
        state = self.runtime.run_store.load(run_id)
        if state is None:
            raise UnknownRunError(run_id)
        if state.status is not RunStatus.WAITING or state.waiting is None:
            raise RunNotWaitingError(f"Run {run_id} is not waiting (status: {state.status.value})", run_id=run_id)
        return state, spec_for_run(self.registry, state)

    def resume_event(self, *, run_id: str, wait_key: Optional[str], payload: Dict[str, Any]) -> RunState:
        _state, spec = self._waiting(run_id)
        return self.runtime.resume(workflow=spec, run_id=run_id, wait_key=wait_key, payload=payload)

    def emit_event(
        self,
        *,
        name: str,
        payload: Optional[Dict[str, Any]] = None,
        scope: str = "session",
        session_id: Optional[str] = None,
        workflow_id: Optional[str] = None,
        run_id: Optional[str] = None,
        max_steps: int = 100,
        limit: int = 10000,
    ) -> List[RunState]:
        """Deliver an event from outside any run (same semantics as EMIT_EVENT, wildcard listeners included)."""
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("emit_event requires a non-empty name")
        from abstractruntime_events.emit import deliver_event

        wait_key = build_event_wait_key(scope=scope, name=name, session_id=session_id, workflow_id=workflow_id,
                                        run_id=run_id)
        wildcard_key = build_event_wait_key(scope=scope, name="*", session_id=session_id,
                                            workflow_id=workflow_id, run_id=run_id)
        envelope = {
            "event_id": None, "name": name.strip(), "scope": (scope or "session").strip().lower(),
            "session_id": session_id, "payload": payload if isinstance(payload, dict) else {"value": payload},
            "emitted_at": utc_now_iso(), "emitter": {"source": "external"},
        }
        if self.runtime.workflow_registry is None:
            self.runtime.set_workflow_registry(self.registry)
        result = deliver_event(self.runtime, wait_key=wait_key, wildcard_key=wildcard_key, envelope=envelope,
                               max_steps=max_steps)
        return [s for s in (self.runtime.run_store.load(r) for r in result["delivered_to"]) if s is not None]

    def find_waiting_runs(
        self, *, wait_reason: Optional[WaitReason] = None, workflow_id: Optional[str] = None, limit: int = 100
    ) -> List[RunState]:
        return self.runtime.run_store.list_runs(status=RunStatus.WAITING, wait_reason=wait_reason,
                                                workflow_id=workflow_id, limit=limit)

    def resume_subworkflow_parent(self, *, child_run_id: str, child_output: Any) -> Optional[RunState]:
        """Resume the parent waiting for this child (reference API); the parent's current state if it was resumed
        for this child already (by this scheduler's automatic wake-up, say); None if there is no such parent."""
        child = self.runtime.run_store.load(child_run_id)
        if child is None or not child.parent_run_id:
            return None
        parent = self.runtime.run_store.load(child.parent_run_id)
        wait = parent.waiting if parent is not None else None
        if (parent is None or parent.status is not RunStatus.WAITING or parent.is_paused or wait is None
                or wait.reason is not WaitReason.SUBWORKFLOW or (wait.details or {}).get("sub_run_id") != child_run_id):
            if parent is not None and _resumed(self.runtime, parent.run_id, lambda p: p.get("wait_key") ==
                                               f"subworkflow:{child_run_id}"):
                return parent
            return None
        spec = spec_for_run(self.registry, parent)
        return self.runtime.resume(workflow=spec, run_id=parent.run_id, wait_key=wait.wait_key,
                                   payload={"sub_run_id": child_run_id, "output": child_output})

    def cancel_with_children(self, run_id: str, *, reason: Optional[str] = None) -> List[RunState]:
        out: List[RunState] = []
        queue, seen = [run_id], set()
        while queue:
            current = queue.pop(0)
            if current in seen:
                continue
            seen.add(current)
            try:
                state = self.runtime.cancel_run(current, reason=reason)
            except KeyError:
                continue
            if state.status is RunStatus.CANCELLED:
                out.append(state)
            for child in self.runtime.run_store.list_children(parent_run_id=current):
                if child.status in (RunStatus.RUNNING, RunStatus.WAITING):
                    queue.append(child.run_id)
        return out


def _resumed(runtime: Any, run_id: str, match: Callable[[Dict[str, Any]], bool], last: bool = False) -> bool:
    """Does the run's ledger have a ``resume`` row whose payload matches (only its last resume row, with ``last``)?"""
    for row in reversed(runtime.get_ledger(run_id)):
        effect = row.get("effect") or {}
        if effect.get("type") == "resume":
            if match(effect.get("payload") or {}):
                return True
            if last:
                return False
    return False


@define
class ScheduledRuntime:
    """A runtime with its scheduler and workflow registry (reference ``ScheduledRuntime``)."""

    runtime: Any
    scheduler: Scheduler
    registry: WorkflowRegistry

    def _ensure(self, workflow: WorkflowSpec) -> None:
        if workflow.workflow_id not in self.registry or (isinstance(self.registry, WorkflowRegistry) and
                                                         workflow.version not in self.registry.versions(
                                                             workflow.workflow_id)):
            self.registry.register(workflow)  # a new version of a registered workflow joins the others

    def run(self, workflow: WorkflowSpec, *, vars: Optional[Dict[str, Any]] = None, actor_id: Optional[str] = None,
            max_steps: int = 100) -> Tuple[str, RunState]:
        self._ensure(workflow)
        run_id = self.runtime.start(workflow=workflow, vars=vars, actor_id=actor_id)
        return run_id, self.runtime.tick(workflow=workflow, run_id=run_id, max_steps=max_steps)

    def start(self, *, workflow: WorkflowSpec, vars: Optional[Dict[str, Any]] = None,
              actor_id: Optional[str] = None) -> str:
        self._ensure(workflow)
        run_id = self.runtime.start(workflow=workflow, vars=vars, actor_id=actor_id)
        self.scheduler._wake()
        return run_id

    def tick(self, run_id: str, *, max_steps: int = 100) -> RunState:
        state = self.runtime.get_state(run_id)
        return self.runtime.tick(workflow=spec_for_run(self.registry, state), run_id=run_id,
                                 max_steps=max_steps)

    def respond(self, run_id: str, payload: Dict[str, Any]) -> RunState:
        """Deliver a person's answer to the run's wait. The same answer delivered again (a retried request) returns
        the run's current state: the scheduler may have continued it already."""
        current = self.runtime.get_state(run_id)
        if current.status is not RunStatus.WAITING and _resumed(self.runtime, run_id,
                                                                lambda p: p.get("payload") == payload, last=True):
            return current
        state, _spec = self.scheduler._waiting(run_id)
        if not state.waiting.wait_key:
            raise RunNotWaitingError(f"Run {run_id} has no wait key to respond to", run_id=run_id)
        return self.scheduler.resume_event(run_id=run_id, wait_key=state.waiting.wait_key, payload=payload)

    def resume_event(self, *, run_id: str, wait_key: Optional[str], payload: Dict[str, Any]) -> RunState:
        return self.scheduler.resume_event(run_id=run_id, wait_key=wait_key, payload=payload)

    def get_state(self, run_id: str) -> RunState:
        return self.runtime.get_state(run_id)

    def get_ledger(self, run_id: str) -> List[Dict[str, Any]]:
        return self.runtime.get_ledger(run_id)

    def find_waiting_runs(self, **kwargs: Any) -> List[RunState]:
        return self.scheduler.find_waiting_runs(**kwargs)

    @property
    def stats(self) -> SchedulerStats:
        return self.scheduler.stats

    def resume_subworkflow_parent(self, *, child_run_id: str, child_output: Any) -> Optional[RunState]:
        return self.scheduler.resume_subworkflow_parent(child_run_id=child_run_id, child_output=child_output)

    def cancel_run(self, run_id: str, *, reason: Optional[str] = None) -> RunState:
        return self.runtime.cancel_run(run_id, reason=reason)

    def cancel_with_children(self, run_id: str, *, reason: Optional[str] = None) -> List[RunState]:
        return self.scheduler.cancel_with_children(run_id, reason=reason)

    @property
    def is_running(self) -> bool:
        return self.scheduler.is_running

    def start_scheduler(self) -> None:
        if not self.scheduler.is_running:
            self.scheduler.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the scheduler after the steps in flight; the runtime stays usable (``start_scheduler()`` again)."""
        self.scheduler.stop(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the scheduler and close the store the runtime opened from configuration (``store=``, ...)."""
        self.scheduler.stop(timeout)
        self.runtime.close()

    def __enter__(self) -> "ScheduledRuntime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def create_scheduled_runtime(
    *,
    run_store: Any = None,
    ledger_store: Any = None,
    artifact_store: Any = None,
    effect_policy: Any = None,
    workflows: Optional[Sequence[WorkflowSpec]] = None,
    effect_handlers: Optional[Dict[Any, Callable[..., Any]]] = None,
    poll_interval_s: Optional[float] = None,
    auto_start: bool = True,
    on_run_resumed: Optional[Callable[[RunState], None]] = None,
    on_run_failed: Optional[Callable[[str, BaseException], None]] = None,
    config: Any = None,
    context: Any = None,
    chat_summarizer: Any = None,
    settings: Any = None,
    workers: Optional[int] = None,
    store: Optional[str] = None,
) -> ScheduledRuntime:
    """Reference factory, with the configuration the rest of the runtime takes.

    The stores are the ones given; else the store the configuration names -- ``store=`` (a URL such as
    ``"lmdb:///var/lib/app/runs"``), ``settings=`` (anything ``Runtime.from_config`` takes: a dict, a TOML file path,
    ``Settings``) or the environment (``ABSTRACTRUNTIME_STORE``, ``ABSTRACTRUNTIME_CONFIG``) -- which the runtime
    opens and ``close()`` closes; else, as in 0.4.2, in-memory stores sharing one backend, and one warning says that
    nothing will survive the process. ``poll_interval_s`` and ``workers`` default to the ``scheduler`` plugin options.
    """
    from abstractruntime import Runtime
    from abstractruntime.settings import load_settings
    from abstractruntime_inmemory.store import InMemoryLedgerStore, InMemoryRunStore, MemoryBackend

    resolved = load_settings(settings)
    if store is not None:
        resolved = attrs.evolve(resolved, store=store)
    if run_store is None and ledger_store is None and resolved.store is None:
        log.warning("scheduler_store_in_memory",
                    hint="create_scheduled_runtime() was given no store and no configuration names one, so its runs "
                         "live in memory and are lost when the process ends (the 0.4.2 default); pass "
                         "store='lmdb:///path/to/runs' (or settings=..., or set ABSTRACTRUNTIME_STORE) to keep them")
        backend = MemoryBackend()
        run_store, ledger_store = backend.run_store, backend.ledger_store
    elif (run_store is None) != (ledger_store is None):
        run_store = run_store if run_store is not None else InMemoryRunStore()
        ledger_store = ledger_store if ledger_store is not None else InMemoryLedgerStore()
    registry = WorkflowRegistry()
    for spec in workflows or ():
        registry.register(spec)
    runtime = Runtime(run_store=run_store, ledger_store=ledger_store, effect_handlers=effect_handlers,
                      workflow_registry=registry, artifact_store=artifact_store, effect_policy=effect_policy,
                      config=config, context=context, chat_summarizer=chat_summarizer, settings=resolved)
    try:
        scheduler = Scheduler(runtime=runtime, registry=registry, poll_interval_s=poll_interval_s,
                              on_run_resumed=on_run_resumed, on_run_failed=on_run_failed, workers=workers)
    except BaseException:
        runtime.close()
        raise
    if auto_start:
        scheduler.start()
    return ScheduledRuntime(runtime=runtime, scheduler=scheduler, registry=registry)
