"""Reference path ``abstractruntime.integrations.abstractcore.summarizer`` (the chat summariser)."""

from abstractruntime_abstractcore.summarizer import AbstractCoreChatSummarizer, ChatSummarizer  # noqa: F401

__all__ = ["ChatSummarizer", "AbstractCoreChatSummarizer"]
