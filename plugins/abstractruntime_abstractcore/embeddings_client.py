"""Embeddings through AbstractCore's ``EmbeddingManager`` (integration spec §1.13; reference path
``abstractruntime.integrations.abstractcore.embeddings_client``).

One difference from the reference, on purpose: ``strict`` defaults to True (``manager_kwargs`` may set it), so a
provider failure raises instead of AbstractCore's default of returning zero vectors, which a memory index would
store as if they were embeddings.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

from attrs import frozen

from abstractruntime.errors import ValidationError

from ._isolation import guarded, import_abstractcore


@frozen
class EmbeddingsResult:
    provider: str
    model: str
    embeddings: List[List[float]]
    dimension: int

    def to_dict(self) -> Dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "embeddings": self.embeddings,
                "dimension": self.dimension}


class AbstractCoreEmbeddingsClient:
    """``EmbeddingManager(provider=, model=, **manager_kwargs)`` (e.g. ``provider="openai-compatible"`` with
    ``manager_kwargs={"provider_kwargs": {"base_url": ...}}`` -> ``POST /v1/embeddings``)."""

    def __init__(self, *, provider: str, model: str, manager_kwargs: Optional[Dict[str, Any]] = None) -> None:
        provider = str(provider or "").strip().lower()
        model = str(model or "").strip()
        if not provider:
            raise ValidationError("provider is required for embeddings")
        if not model:
            raise ValidationError("model is required for embeddings")
        self._provider = provider
        self._model = model
        kwargs = dict(manager_kwargs or {})
        kwargs.setdefault("strict", True)
        module = import_abstractcore("abstractcore.embeddings.manager")
        with guarded():
            self._manager = module.EmbeddingManager(provider=provider, model=model, **kwargs)

    @property
    def provider(self) -> str:
        return self._provider

    @property
    def model(self) -> str:
        return self._model

    def embed_texts(self, texts: Iterable[Any]) -> EmbeddingsResult:
        items = [str(t or "") for t in texts]
        vectors = self._manager.embed_batch(items) if items else []
        dimension = int(self._manager.get_dimension() or 0)
        return EmbeddingsResult(provider=self._provider, model=self._model,
                                embeddings=[[float(x) for x in v] for v in vectors], dimension=dimension)


__all__ = ["EmbeddingsResult", "AbstractCoreEmbeddingsClient"]
