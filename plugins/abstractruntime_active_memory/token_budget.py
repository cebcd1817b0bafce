"""Token estimates and input trimming (reference path ``abstractruntime.memory.token_budget``).

Estimates come from AbstractCore's ``TokenUtils`` when AbstractCore is installed, else ``max(1, len(text) / 4)``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

_ESTIMATOR: List[Optional[Callable[..., int]]] = []


def _abstractcore_estimator() -> Optional[Callable[..., int]]:
    if not _ESTIMATOR:
        try:
            from abstractcore.utils.token_utils import TokenUtils
        except ImportError:  # AbstractCore is optional
            _ESTIMATOR.append(None)
        else:
            _ESTIMATOR.append(TokenUtils.estimate_tokens)
    return _ESTIMATOR[0]


def estimate_tokens(text: Optional[str], *, model: Optional[str] = None) -> int:
    """Tokens of ``text``: 0 for an empty text."""
    text = "" if text is None else str(text)
    if not text:
        return 0
    estimator = _abstractcore_estimator()
    if estimator is not None:
        try:
            return int(estimator(text, model))
        except Exception:  # an AbstractCore estimator error falls back to the character heuristic
            pass
    return max(1, int(len(text) / 4))


def estimate_message_tokens(message: Mapping[str, Any], *, model: Optional[str] = None) -> int:
    """Tokens of ``"<role>: <content>"`` (just the content when the role is blank)."""
    role = str(message.get("role") or "").strip()
    content = message.get("content")
    content = "" if content is None else str(content)
    return estimate_tokens(f"{role}: {content}" if role else content, model=model)


def trim_messages_to_max_input_tokens(messages: Sequence[Any], *, max_input_tokens: Any,
                                      model: Optional[str] = None) -> List[Dict[str, Any]]:
    """System messages first, the last non-system message always, then older ones newest-first while they fit
    in ``max_input_tokens`` (the scan stops at the first that does not). A budget that is not a positive int
    leaves the messages as they are (as copies)."""
    dicts = [dict(m) for m in messages if isinstance(m, Mapping)]
    if isinstance(max_input_tokens, bool) or not isinstance(max_input_tokens, int) or max_input_tokens <= 0:
        return dicts
    system = [m for m in dicts if m.get("role") == "system"]
    others = [m for m in dicts if m.get("role") != "system"]
    if not others:
        return system
    used = sum(estimate_message_tokens(m, model=model) for m in system + others[-1:])
    kept: List[Dict[str, Any]] = []
    for message in reversed(others[:-1]):
        cost = estimate_message_tokens(message, model=model)
        if used + cost > max_input_tokens:
            break
        used += cost
        kept.append(message)
    return system + kept[::-1] + others[-1:]


__all__ = ["estimate_tokens", "estimate_message_tokens", "trim_messages_to_max_input_tokens"]
