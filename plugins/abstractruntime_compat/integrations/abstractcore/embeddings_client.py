"""``abstractruntime.integrations.abstractcore.embeddings_client`` (embeddings through AbstractCore)."""

from abstractruntime_abstractcore.embeddings_client import AbstractCoreEmbeddingsClient, EmbeddingsResult  # noqa: F401

__all__ = ["EmbeddingsResult", "AbstractCoreEmbeddingsClient"]
