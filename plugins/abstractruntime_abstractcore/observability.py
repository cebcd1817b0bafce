"""Bridges to AbstractCore's observability and embeddings (reference names ``emit_step_record``,
``attach_global_event_bus_bridge``, ``AbstractCoreEmbeddingsClient``, ``EmbeddingsResult``)."""

from __future__ import annotations

from enum import Enum
from typing import Any, Callable, Dict, List, Optional, Sequence

from attrs import field, frozen

from abstractruntime.errors import InvalidTypeError

from ._isolation import import_abstractcore
from .errors import EmbeddingsError

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


@frozen
class EmbeddingsResult:
    provider: str
    model: str
    embeddings: List[List[float]] = field(factory=list)
    dimension: int = 0
    usage: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "embeddings": self.embeddings,
                "dimension": self.dimension, "usage": self.usage}


class AbstractCoreEmbeddingsClient:
    """Embeddings through an AbstractCore provider's ``embed`` (e.g. ``openai-compatible`` -> ``/v1/embeddings``)."""

    def __init__(self, *, provider: str, model: str, llm_kwargs: Optional[Dict[str, Any]] = None) -> None:
        from .llm_client import LocalAbstractCoreLLMClient

        kwargs = dict(llm_kwargs or {})
        kwargs.setdefault("validate_model", False)
        self.provider = provider
        self.model = model
        self._client = LocalAbstractCoreLLMClient(provider=provider, model=model, llm_kwargs=kwargs)

    def embed_texts(self, texts: Sequence[str]) -> EmbeddingsResult:
        texts = [str(t) for t in texts]
        if not texts:
            return EmbeddingsResult(self.provider, self.model, [], 0)
        out = self._client.llm.embed(texts)
        data = sorted(out.get("data") or [], key=lambda d: d.get("index", 0))
        vectors = [[float(x) for x in d.get("embedding") or []] for d in data]
        if len(vectors) != len(texts):
            raise EmbeddingsError(f"embedding provider returned {len(vectors)} vectors for {len(texts)} texts")
        return EmbeddingsResult(self.provider, self.model, vectors, len(vectors[0]) if vectors else 0,
                                out.get("usage") if isinstance(out.get("usage"), dict) else None)
