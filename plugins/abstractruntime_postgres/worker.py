"""A worker process for the PostgreSQL store: claim runnable runs, drive them under a fenced lease, release them.

Run one :class:`PostgresWorker` per process, on as many machines as you like, all on the same database::

    rt = Runtime.from_config({"store": "postgresql://app@db/app"}, workflow_registry=registry)
    worker = PostgresWorker(rt, lease_s=30)
    worker.run_forever()          # or worker.start() / worker.stop(), or worker.run_once() from your own loop

Each cycle claims up to ``batch_size`` runs (``claim_runnable``: RUNNING runs and due timers, plus -- every
``pollable_interval_s`` -- runs waiting for a child or job, which a tick may find ready), then ticks each claimed
run inside ``backend.fenced(run_id, epoch)``, up to ``steps_per_tick`` steps per tick (the steps of a tick are
written together at its barriers: a side effect's reservation carries the steps before it), until it stops being
RUNNING. A heartbeat thread
extends the leases of the runs in hand every ``heartbeat_s`` (default ``lease_s / 3``), also while a long effect
runs; a lease that could not be extended is marked lost and the run is dropped after the step in flight (whose
commit the store refuses anyway). Between cycles with nothing to do, the worker waits for a ``NOTIFY`` from the
store (a run became RUNNING, a timer was set) or for the next timer, at most ``poll_interval_s``.

The kernel is not aware of any of this: fencing is the store's ``commit_step`` refusing a stale epoch, which the
tick loop treats like any concurrent modification.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterable, List, Optional, Tuple

from attrs import define, field

from abstractruntime.errors import (
    ConfigurationError,
    CorruptStoreError,
    InvalidStateError,
    NotFoundError,
    ValidationError,
)
from abstractruntime.logs import get_logger
from abstractruntime.models import RunState, RunStatus, WaitReason, utc_now_iso
from abstractruntime.storage.base import Capability
from abstractruntime_pluginkit import attach_driver, spec_for_run

from .errors import StoreUnavailableError

log = get_logger("abstractruntime.postgres.worker")

DEFAULT_POLLABLE = (WaitReason.SUBWORKFLOW.value, WaitReason.JOB.value)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@define
class WorkerStats:
    cycles: int = 0
    runs_claimed: int = 0
    runs_driven: int = 0
    steps: int = 0
    leases_lost: int = 0
    errors: List[str] = field(factory=list)
    #: runs whose stored checkpoint (or ledger) cannot be decoded: not claimed again until their revision changes
    corrupt_runs: List[str] = field(factory=list)
    #: how many times a claimed run was found corrupt and skipped
    corrupt_runs_skipped: int = 0


class PostgresWorker:
    """Drives runs of a PostgreSQL-backed :class:`~abstractruntime.Runtime` under leases (see the module doc)."""

    def __init__(self, runtime: Any, registry: Any = None, *, worker_id: Optional[str] = None,
                 lease_s: float = 30.0, heartbeat_s: Optional[float] = None, batch_size: int = 8,
                 poll_interval_s: float = 1.0, threads: int = 1,
                 wait_reasons: Iterable[str] = DEFAULT_POLLABLE, pollable_interval_s: float = 10.0,
                 listen: bool = True, max_errors_kept: int = 100, steps_per_tick: int = 16) -> None:
        backend = runtime.backend
        if not backend.supports(Capability.LEASES):
            raise ConfigurationError("PostgresWorker needs a runtime on a store with leases: the postgres store "
                                     "(store URL postgresql://...)")
        if float(lease_s) <= 0:
            raise ValidationError(f"lease_s must be positive, got {lease_s!r}")
        self.runtime = runtime
        self.backend = backend
        attach_driver(runtime, self)  # finished children wake their parents (the subworkflows plugin)
        self.registry = registry
        self.worker_id = worker_id or default_worker_id()
        self.lease_s = float(lease_s)
        self.heartbeat_s = float(heartbeat_s) if heartbeat_s is not None else self.lease_s / 3.0
        self.batch_size = max(1, int(batch_size))
        self.poll_interval_s = float(poll_interval_s)
        self.threads = max(1, int(threads))
        self.steps_per_tick = max(1, int(steps_per_tick))
        self.wait_reasons = tuple(WaitReason(r).value for r in wait_reasons)
        self.pollable_interval_s = float(pollable_interval_s)
        self.listen = bool(listen)
        self.max_errors_kept = max_errors_kept
        self.stats = WorkerStats()
        self._stats_lock = threading.Lock()
        self._held: Dict[str, Any] = {}  # run_id -> Fence
        self._held_lock = threading.Lock()
        self._skip: Dict[str, int] = {}  # run_id -> revision that failed (dropped until the run changes)
        self._corrupt: Dict[str, int] = {}  # run_id -> revision found corrupt (not claimed until it changes)
        self._last_pollable = 0.0
        self._stop = threading.Event()
        self._hb_stop = threading.Event()
        self._hb_thread: Optional[threading.Thread] = None
        self._thread: Optional[threading.Thread] = None
        self._pool: Optional[ThreadPoolExecutor] = None

    # --- lifecycle --------------------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Run :meth:`run_forever` in a background thread."""
        if self.is_running:
            raise InvalidStateError("Worker is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self.run_forever, name=f"abstractruntime-pg-{self.worker_id}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the steps in flight; their runs are released (a RUNNING one is announced to others)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._stop_heartbeat()

    def run_forever(self) -> None:
        """Claim and drive until :meth:`stop`; waits for a NOTIFY, the next timer or ``poll_interval_s``."""
        self._stop.clear()
        try:
            while not self._stop.is_set():
                try:
                    driven = self.run_once()
                except Exception as exc:  # the loop survives a database hiccup; polling retries
                    self._record_error(f"cycle failed: {type(exc).__name__}: {exc}")
                    driven = 0
                if driven or self._stop.is_set():
                    continue
                self._idle()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            self._stop_heartbeat()

    def _idle(self) -> None:
        timeout = self.poll_interval_s
        try:
            due_in = self.backend.next_timer_in()
        except Exception:
            due_in = None
        if due_in is not None:
            timeout = min(timeout, max(0.0, due_in))
        if timeout <= 0:
            return
        if self.listen:
            try:
                self.backend.wait_for_work(timeout)
                return
            except Exception as exc:
                self._record_error(f"wait_for_work failed: {type(exc).__name__}: {exc}")
        self._stop.wait(timeout)

    # --- one cycle --------------------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Claim up to ``batch_size`` runs and drive each until it stops being RUNNING; returns how many runs
        made progress (a claimed run whose tick changed nothing, e.g. a child still running, does not count)."""
        with self._stats_lock:
            self.stats.cycles += 1
        self._driver_poll()
        reasons: Tuple[str, ...] = ()
        now = time.monotonic()
        if self.wait_reasons and now - self._last_pollable >= self.pollable_interval_s:
            reasons = self.wait_reasons
        polled: List[bool] = []
        claims = self.backend.claim_runnable(self.worker_id, limit=self.batch_size, lease_s=self.lease_s,
                                             wait_reasons=reasons, exclude=list(self._corrupt.items()),
                                             polled=polled)
        if polled:  # looked at: the timer restarts (a batch full of runnable runs left them for the next cycle)
            self._last_pollable = now
        if not claims:
            return 0
        with self._stats_lock:
            self.stats.runs_claimed += len(claims)
        self._ensure_heartbeat()
        if self.threads == 1 or len(claims) == 1:
            results = [self.drive(run_id, epoch) for run_id, epoch in claims]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="abstractruntime-pg")
            results = list(self._pool.map(lambda c: self.drive(*c), claims))
        return sum(1 for r in results if r)

    def _driver_poll(self) -> None:
        """Let plugins create the runs due now (the scheduler plugin's ``abstractruntime_driver_poll``: the schedules
        plugin starts due schedules' runs, once per fire time however many workers poll)."""
        hook = getattr(self.runtime.hooks.plugin_manager.hook, "abstractruntime_driver_poll", None)
        if hook is None or not hook.get_hookimpls():
            return
        try:
            hook(runtime=self.runtime, registry=self.registry)
        except Exception as exc:  # the cycle goes on: claiming and driving do not depend on it
            self._record_error(f"driver poll failed: {type(exc).__name__}: {exc}")

    def drive(self, run_id: str, epoch: int) -> bool:
        """Tick a claimed run under its fence (``steps_per_tick`` steps per tick) until it stops being RUNNING;
        release it afterwards unless the lease was lost. Returns whether this worker moved the run on: a run whose
        lease was lost (another worker holds it now) does not count, whatever its stored state shows."""
        progressed = False
        with self.backend.fenced(run_id, epoch, self.worker_id, lease_s=self.lease_s) as fence:
            with self._held_lock:
                self._held[run_id] = fence
            try:
                state: Optional[RunState] = self.runtime.run_store.load(run_id)
                if self._corrupt.pop(run_id, None) is not None:  # it loads again: rewritten since
                    self._note_corrupt()
                if state is None or self._skip.get(run_id) == state.revision:
                    return False
                spec = self._workflow(state)
                start_revision = state.revision
                while not self._stop.is_set() and not fence.lost:
                    before, before_step = state.revision, state.step
                    try:
                        state = self.runtime.tick(workflow=spec, run_id=run_id, max_steps=self.steps_per_tick)
                    finally:  # runs the tick made RUNNING and drove inline (a sync child, a woken parent)
                        self.backend.release_adopted(fence)
                    if state.revision != before and not fence.lost:
                        with self._stats_lock:
                            self.stats.steps += max(1, state.step - before_step)
                    if fence.lost or state.status is not RunStatus.RUNNING or state.revision == before:
                        break
                progressed = not fence.lost and state.revision != start_revision
                if progressed:
                    self._skip.pop(run_id, None)
                    with self._stats_lock:
                        self.stats.runs_driven += 1
            except StoreUnavailableError as exc:  # the database, not the run: try it again on a later cycle
                self._record_error(f"run {run_id}: {type(exc).__name__}: {exc}")
            except Exception as exc:
                current = self.runtime.run_store.load_revision(run_id) if not fence.lost else None
                if current is not None:
                    self._skip[run_id] = current
                    if isinstance(exc, CorruptStoreError):
                        self._corrupt[run_id] = current
                        self._note_corrupt(skipped=1)
                self._record_error(f"run {run_id}: {type(exc).__name__}: {exc}")
            finally:
                with self._held_lock:
                    self._held.pop(run_id, None)
                if fence.lost:
                    with self._stats_lock:
                        self.stats.leases_lost += 1
                    log.info("postgres_lease_lost", worker=self.worker_id, run_id=run_id, epoch=epoch)
                else:
                    try:
                        self.backend.release(self.worker_id, run_id, epoch)
                    except Exception as exc:  # the lease expires by itself
                        self._record_error(f"release of run {run_id} failed: {type(exc).__name__}: {exc}")
        return progressed

    def _workflow(self, state: RunState) -> Any:
        registry = self.registry if self.registry is not None else getattr(self.runtime, "workflow_registry", None)
        if registry is None:
            raise NotFoundError("PostgresWorker has no workflow registry (pass registry= or set the runtime's)")
        return spec_for_run(registry, state)

    # --- heartbeats -------------------------------------------------------------------------------------------
    def _ensure_heartbeat(self) -> None:
        if self._hb_thread is not None and self._hb_thread.is_alive():
            return
        self._hb_stop.clear()
        self._hb_thread = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                           name=f"abstractruntime-pg-heartbeat-{self.worker_id}")
        self._hb_thread.start()

    def _stop_heartbeat(self) -> None:
        self._hb_stop.set()
        if self._hb_thread is not None:
            self._hb_thread.join(5.0)
            self._hb_thread = None

    def heartbeat_now(self) -> List[str]:
        """Extend the leases of the runs in hand now; marks the ones that could not be extended as lost."""
        with self._held_lock:
            fences = [f for root in self._held.values() for f in [root, *list(root.adopted)] if not f.released]
        if not fences:
            return []
        alive = set(self.backend.heartbeat(self.worker_id, [(f.run_id, f.epoch) for f in fences], self.lease_s))
        for fence in fences:
            if fence.run_id not in alive and not fence.released:
                fence.lost = True
        return sorted(alive)

    def _heartbeat_loop(self) -> None:
        while not self._hb_stop.wait(self.heartbeat_s):
            try:
                self.heartbeat_now()
            except Exception as exc:  # the next beat retries; a lease that runs out is taken over
                self._record_error(f"heartbeat failed: {type(exc).__name__}: {exc}")

    def _note_corrupt(self, skipped: int = 0) -> None:
        with self._stats_lock:
            self.stats.corrupt_runs = sorted(self._corrupt)
            self.stats.corrupt_runs_skipped += skipped

    def _record_error(self, message: str) -> None:
        log.warning("postgres_worker_error", worker=self.worker_id, error=message)
        with self._stats_lock:
            self.stats.errors.append(f"{utc_now_iso()}: {message}")
            del self.stats.errors[: max(0, len(self.stats.errors) - self.max_errors_kept)]


__all__ = ["PostgresWorker", "WorkerStats", "default_worker_id"]
