"""The console's actions: answer a waiting run, pause, resume, cancel.

Answering resumes the run when the console can resolve its workflow, in this order: a run started from a ``.flow``
bundle by ``abstractruntime flow run`` (the bundle it remembers is compiled and registered, as ``flow resume``
does), a workflow the embedding host passed to ``app(workflows=[...])``, the runtime's workflow registry. The run
(and the subflow children it waits for) is then driven until it finishes or waits again. Otherwise the answer is
delivered as ``abstractruntime respond`` does, and the run stays RUNNING for a worker or scheduler.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from abstractruntime.errors import AbstractRuntimeError, InvalidStateError, ValidationError
from abstractruntime.models import RunStatus, WaitReason
from abstractruntime_bundles.cli import META_KEY, prepare_run_bundle
from abstractruntime_cli import deliver_answer
from abstractruntime.logs import get_logger

log = get_logger("abstractruntime.web")


class _Specs:
    """The workflows passed to ``app()`` first, then the runtime's registry (what ``drive`` asks with ``get``)."""

    def __init__(self, runtime: Any, workflows: Mapping[str, Any]) -> None:
        self.runtime, self.workflows = runtime, workflows

    def get(self, workflow_id: str) -> Any:
        spec = self.workflows.get(workflow_id)
        registry = self.runtime.workflow_registry
        if spec is None and registry is not None:
            spec = registry.get(workflow_id)
        return spec


def _flow_root(runtime: Any, run_id: str) -> Any:
    from abstractruntime_visualflow.drive import root_run

    root = root_run(runtime, run_id)
    return root if isinstance(root.vars.get(META_KEY), dict) else None


def resolve(runtime: Any, run_id: str, workflows: Mapping[str, Any]) -> Optional[_Specs]:
    """Specs for ``run_id``'s tree if its workflow can be resolved (registering a ``.flow`` run's flows), else
    None. A bundle that cannot be opened any more is logged and treated as unresolved."""
    state = runtime.get_state(run_id)
    if _flow_root(runtime, run_id) is not None:
        try:
            prepare_run_bundle(runtime, run_id)
        except (AbstractRuntimeError, OSError) as exc:
            log.warning("web.bundle_unavailable", run_id=run_id, error=str(exc))
            return None
    specs = _Specs(runtime, workflows)
    return specs if specs.get(state.workflow_id) is not None else None


def _drive(runtime: Any, run_id: str, specs: _Specs) -> None:
    from abstractruntime_visualflow.drive import drive, root_run

    drive(runtime, run_id, registry=specs)
    root = root_run(runtime, run_id)
    if root.run_id != run_id:
        drive(runtime, root.run_id, registry=specs)


def answer(runtime: Any, run_id: str, payload: Dict[str, Any], workflows: Mapping[str, Any]) -> Dict[str, Any]:
    """Answer the wait of ``run_id``; ``{"outcome": "resumed" | "recorded", "status": ...}``."""
    state = runtime.get_state(run_id)
    wait = state.waiting
    if state.status is not RunStatus.WAITING or wait is None:
        raise InvalidStateError(f"run {run_id} is not waiting (status: {state.status.value}): nothing to answer")
    if wait.reason in (WaitReason.UNTIL, WaitReason.SUBWORKFLOW):
        raise InvalidStateError(f"run {run_id} waits for {wait.reason.value}, which is not answered by hand")
    if state.is_paused:
        raise InvalidStateError(f"run {run_id} is paused: resume it before answering")
    if wait.choices and not wait.allow_free_text and set(payload) == {"response"} and \
            payload["response"] not in wait.choices:
        raise ValidationError(f"the answer must be one of {', '.join(map(str, wait.choices))}")
    specs = resolve(runtime, run_id, workflows)
    if specs is None:
        after = deliver_answer(runtime, run_id, payload, wait_key=wait.wait_key)
        return {"outcome": "recorded", "status": after.status.value}
    runtime.resume(workflow=specs.get(state.workflow_id), run_id=run_id, wait_key=wait.wait_key, payload=payload,
                   max_steps=0)
    _drive(runtime, run_id, specs)
    return {"outcome": "resumed", "status": runtime.get_state(run_id).status.value}


def pause(runtime: Any, run_id: str) -> Dict[str, Any]:
    return {"outcome": "paused", "status": runtime.pause_run(run_id, reason="paused from the web console")
            .status.value}


def resume(runtime: Any, run_id: str, workflows: Mapping[str, Any]) -> Dict[str, Any]:
    """Lift a pause; a RUNNING run whose workflow resolves is driven on."""
    state = runtime.resume_run(run_id)
    if state.status is RunStatus.RUNNING:
        specs = resolve(runtime, run_id, workflows)
        if specs is not None:
            _drive(runtime, run_id, specs)
    return {"outcome": "resumed", "status": runtime.get_state(run_id).status.value}


def cancel(runtime: Any, run_id: str) -> Dict[str, Any]:
    return {"outcome": "cancelled",
            "status": runtime.cancel_run(run_id, reason="cancelled from the web console").status.value}


__all__ = ["answer", "pause", "resume", "cancel", "resolve"]
