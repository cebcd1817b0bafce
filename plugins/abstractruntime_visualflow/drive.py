"""Host helpers: drive a visual run (and the subflow children it waits for) synchronously; start listeners.

The kernel's ``tick`` drives one run. A subflow node starts its child asynchronously and waits for it
(``START_SUBWORKFLOW`` with ``async`` and ``wait``); when the child finishes, the ``subworkflows`` plugin wakes the
parent. :func:`drive` is the "sync host": it ticks the run, descends into the children it waits for, and returns
when the run tree is finished or waits for something only the outside world can give (a person, an event, a timer).
With a running :class:`~abstractruntime_scheduler.Scheduler` none of this is needed.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from abstractruntime.errors import NotFoundError, ValidationError
from abstractruntime.models import RunState, RunStatus, WaitReason
from abstractruntime.timeutil import now_utc, parse_instant


def _spec(runtime: Any, registry: Any, workflow_id: str) -> Any:
    reg = registry if registry is not None else runtime.workflow_registry
    spec = reg.get(workflow_id) if reg is not None else None
    if spec is None:
        raise NotFoundError(f"Workflow '{workflow_id}' is not registered (register the compiled specs first)")
    return spec


def drive(runtime: Any, run_id: str, *, registry: Any = None, max_steps: int = 10_000) -> RunState:
    """Tick ``run_id`` and the subflow children it waits for until nothing can progress without outside input."""
    budget = [max_steps]
    return _drive(runtime, run_id, registry, budget)


def _drive(runtime: Any, run_id: str, registry: Any, budget: List[int]) -> RunState:
    while budget[0] > 0:
        state = runtime.get_state(run_id)
        if state.status.is_terminal or state.is_paused:
            return state
        if state.status is RunStatus.RUNNING:
            spec = _spec(runtime, registry, state.workflow_id)
            steps = min(100, budget[0])
            budget[0] -= steps
            runtime.tick(workflow=spec, run_id=run_id, max_steps=steps)
            continue
        wait = state.waiting
        if wait is None:
            return state
        if wait.reason is WaitReason.UNTIL and wait.until:
            try:
                due = now_utc() >= parse_instant(wait.until)
            except ValueError:
                due = False
            if not due:
                return state
            budget[0] -= 1
            runtime.tick(workflow=_spec(runtime, registry, state.workflow_id), run_id=run_id, max_steps=1)
            continue
        if wait.reason is WaitReason.SUBWORKFLOW:
            child_id = (wait.details or {}).get("sub_run_id")
            child = runtime.run_store.load(child_id) if child_id else None
            if child is None:
                return state
            if not child.status.is_terminal:
                before = child.revision
                child = _drive(runtime, child_id, registry, budget)
                if not child.status.is_terminal and child.revision == before:
                    return runtime.get_state(run_id)  # the child waits for the outside world
                if not child.status.is_terminal:
                    continue
            after = runtime.get_state(run_id)
            if after.status is RunStatus.WAITING and after.waiting is not None and \
                    after.waiting.reason is WaitReason.SUBWORKFLOW and after.revision == state.revision:
                # the automatic wake-up did not happen (e.g. no registry on the runtime): poll it
                budget[0] -= 1
                runtime.tick(workflow=_spec(runtime, registry, state.workflow_id), run_id=run_id, max_steps=1)
                if runtime.get_state(run_id).revision == state.revision:
                    return state
            continue
        return state
    return runtime.get_state(run_id)


def blocking_run(runtime: Any, run_id: str) -> RunState:
    """The run that actually waits for the outside world: ``run_id`` or the deepest subflow child it waits for."""
    state = runtime.get_state(run_id)
    seen = set()
    while (state.status is RunStatus.WAITING and state.waiting is not None
           and state.waiting.reason is WaitReason.SUBWORKFLOW and state.run_id not in seen):
        seen.add(state.run_id)
        child_id = (state.waiting.details or {}).get("sub_run_id")
        child = runtime.run_store.load(child_id) if child_id else None
        if child is None or child.status.is_terminal:
            break
        state = child
    return state


def root_run(runtime: Any, run_id: str) -> RunState:
    state = runtime.get_state(run_id)
    seen = set()
    while state.parent_run_id and state.parent_run_id not in seen:
        seen.add(state.run_id)
        parent = runtime.run_store.load(state.parent_run_id)
        if parent is None:
            break
        state = parent
    return state


def start_listeners(runtime: Any, flow: Any, *, registry: Any = None, session_id: Optional[str] = None,
                    vars: Optional[Dict[str, Any]] = None, **compile_kwargs: Any) -> List[Tuple[str, str]]:
    """Compile the listener specs of ``flow``'s ``on_event`` nodes, register them, start one run per listener
    (in ``session_id``) and tick it to its first wait. Returns ``[(workflow_id, run_id)]``."""
    from .compiler import compile_visualflow_listeners

    reg = registry if registry is not None else runtime.workflow_registry
    if reg is None:
        raise ValidationError("start_listeners needs a workflow registry (runtime.workflow_registry or registry=)")
    out = []
    for wid, spec in compile_visualflow_listeners(flow, runtime=runtime, **compile_kwargs).items():
        if wid not in reg:
            reg.register(spec)
        spec = reg.get(wid)
        run_id = runtime.start(workflow=spec, vars=dict(vars or {}), session_id=session_id)
        runtime.tick(workflow=spec, run_id=run_id, max_steps=10)
        out.append((wid, run_id))
    return out


__all__ = ["drive", "blocking_run", "root_run", "start_listeners"]
