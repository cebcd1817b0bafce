"""The chat summariser (spec §1.9, §6.3): what ``Runtime(chat_summarizer=...)`` calls during ``MEMORY_COMPACT``.

:class:`ChatSummarizer` is the protocol; :class:`AbstractCoreChatSummarizer` wraps AbstractCore's
``BasicSummarizer`` (structured output through the given LLM, an AbstractCore provider instance)::

    from abstractcore import create_llm
    llm = create_llm("openai-compatible", model="qwen3", base_url="http://127.0.0.1:1234/v1")
    rt = create_local_runtime(provider="openai-compatible", model="qwen3",
                              chat_summarizer=AbstractCoreChatSummarizer(llm))

One difference from 0.4.2, on purpose: ``preserve_recent <= 0`` (what ``MEMORY_COMPACT`` passes) summarises every
message given. AbstractCore's ``BasicSummarizer`` slices ``messages[:-0]``, an empty list, so the reference
summarised nothing and returned a summary of empty text.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Protocol, runtime_checkable

from ._isolation import import_abstractcore

_MODES = ("light", "standard", "heavy")


@runtime_checkable
class ChatSummarizer(Protocol):
    def summarize_chat_history(self, messages: List[Dict[str, Any]], *, preserve_recent: int = 6,
                               focus: Optional[str] = None, compression_mode: str = "standard") -> Dict[str, Any]:
        ...


def _mode_name(compression_mode: Any) -> str:
    """``light`` / ``standard`` / ``heavy`` (any case; an AbstractCore ``CompressionMode`` is accepted too);
    anything else is ``standard``."""
    value = getattr(compression_mode, "value", compression_mode)
    name = str(value or "").strip().lower()
    return name if name in _MODES else "standard"


def _float_or_none(value: Any) -> Optional[float]:
    if not value:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class AbstractCoreChatSummarizer:
    """A :class:`ChatSummarizer` backed by AbstractCore's ``BasicSummarizer(llm=, max_tokens=, max_output_tokens=)``
    (built here, at construction; -1 = the model's own limits)."""

    def __init__(self, llm: Any, *, max_tokens: int = -1, max_output_tokens: int = -1) -> None:
        processing = import_abstractcore("abstractcore.processing")
        self._llm = llm
        self._max_tokens = int(max_tokens)
        self._max_output_tokens = int(max_output_tokens)
        self._summarizer = processing.BasicSummarizer(llm=llm, max_tokens=self._max_tokens,
                                                      max_output_tokens=self._max_output_tokens)

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def max_output_tokens(self) -> int:
        return self._max_output_tokens

    def summarize_chat_history(self, messages: List[Dict[str, Any]], *, preserve_recent: int = 6,
                               focus: Optional[str] = None, compression_mode: str = "standard") -> Dict[str, Any]:
        """``{summary, key_points, confidence, focus_alignment, word_count_original, word_count_summary}`` of the
        messages older than the last ``preserve_recent`` (all of them when ``preserve_recent <= 0``).
        ``confidence`` and ``focus_alignment`` are None when the model gave 0 / nothing."""
        basic = import_abstractcore("abstractcore.processing.basic_summarizer")
        msgs = [{**m, "role": str(m.get("role") or "user"),
                 "content": "" if m.get("content") is None else str(m.get("content"))}
                for m in (messages or []) if isinstance(m, dict)]  # BasicSummarizer needs string contents
        keep = int(preserve_recent or 0)
        if keep <= 0:  # BasicSummarizer would slice messages[:-0] == []: summarise everything instead
            keep = len(msgs)
        out = self._summarizer.summarize_chat_history(
            msgs, preserve_recent=keep, focus=focus,
            compression_mode=basic.CompressionMode(_mode_name(compression_mode)))
        return {
            "summary": str(getattr(out, "summary", "") or ""),
            "key_points": list(getattr(out, "key_points", None) or []),
            "confidence": _float_or_none(getattr(out, "confidence", None)),
            "focus_alignment": _float_or_none(getattr(out, "focus_alignment", None)),
            "word_count_original": getattr(out, "word_count_original", None),
            "word_count_summary": getattr(out, "word_count_summary", None),
        }


__all__ = ["ChatSummarizer", "AbstractCoreChatSummarizer"]
