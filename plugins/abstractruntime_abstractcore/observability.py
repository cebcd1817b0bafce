"""Bridges to AbstractCore's observability and embeddings (reference names ``emit_step_record``,
``attach_global_event_bus_bridge``, ``AbstractCoreEmbeddingsClient``, ``EmbeddingsResult``)."""

from __future__ import annotations

from enum import Enum
from typing import Any, Callable, Dict, Optional

from abstractruntime.errors import InvalidTypeError

from ._isolation import import_abstractcore

_EVENT_BY_STATUS = {"started": "WORKFLOW_STEP_STARTED", "completed": "WORKFLOW_STEP_COMPLETED",
                    "waiting": "WORKFLOW_STEP_WAITING", "failed": "WORKFLOW_STEP_FAILED"}


def _record_dict(record: Any) -> Dict[str, Any]:
    if isinstance(record, dict):
        return record  # passed on as is, as the reference does
    to_dict = getattr(record, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    raise InvalidTypeError(f"expected a StepRecord or its dict, got {type(record).__name__}")


def emit_step_record(record: Dict[str, Any], *, source: str = "abstractruntime") -> None:
    """Emit one ledger record on AbstractCore's ``GlobalEventBus``.

    Status ``started`` / ``completed`` / ``waiting`` / ``failed`` -> ``WORKFLOW_STEP_STARTED`` / ``_COMPLETED`` /
    ``_WAITING`` / ``_FAILED`` with data ``{run_id, node_id, step_id, status, record}`` (``record`` is the dict
    given); any other status emits nothing. ``record`` may also be a :class:`~abstractruntime.models.StepRecord`.
    """
    data = _record_dict(record)
    status = data.get("status")
    name = _EVENT_BY_STATUS.get(status.value if isinstance(status, Enum) else status)  # type: ignore[arg-type]
    if name is None:
        return
    events = import_abstractcore("abstractcore.events")
    event_type = getattr(events.EventType, name, None)
    if event_type is not None:
        events.GlobalEventBus.emit(event_type, {"run_id": data.get("run_id"), "node_id": data.get("node_id"),
                                                "step_id": data.get("step_id"), "status": status, "record": data},
                                   source=source)


def attach_global_event_bus_bridge(*, runtime: Any, run_id: Optional[str] = None,
                                   source: str = "abstractruntime") -> Callable[[], None]:
    """Forward every committed ledger record of ``runtime`` (of ``run_id`` only, if given) to AbstractCore's global
    event bus through :func:`emit_step_record`. Returns the function that stops it. ``runtime`` may also be a
    ledger store with ``subscribe`` (an ``ObservableLedgerStore``)."""
    subscribe = getattr(runtime, "subscribe_ledger", None) or getattr(runtime, "subscribe", None)
    if subscribe is None:
        raise InvalidTypeError("attach_global_event_bus_bridge needs a Runtime (or a ledger store with subscribe)")
    import_abstractcore("abstractcore.events")  # fail now, not inside a subscriber, if AbstractCore is missing
    return subscribe(lambda record: emit_step_record(record, source=source), run_id=run_id)


from .embeddings_client import AbstractCoreEmbeddingsClient, EmbeddingsResult  # noqa: E402,F401  (reference names)
