"""Per-turn grounding (integration spec §2.2): a ``[YYYY-MM-DD HH:MM:SS CC]`` header (local wall-clock time and a
two-letter country code) in front of the user's turn, never in the system prompt.

Both LLM clients apply :func:`inject_turn_grounding` (idempotent: text that already starts with a header is left
alone) and :func:`strip_system_context_header` to the system prompt, so whatever grounded the turn before (the
LLM_CALL handler) is not grounded twice.
"""

from __future__ import annotations

import locale
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

#: a header as the first thing of a line: ``[2026-12-02 14:34(:15)? FR]`` (``-`` or ``/`` separators, any case)
HEADER_RE = re.compile(r"^\[\d{4}[-/]\d{2}[-/]\d{2} \d{2}:\d{2}(?::\d{2})? [A-Za-z]{2}\]", re.IGNORECASE)
#: the legacy form ``Grounding: 2024/01/01|10:00|FR``
LEGACY_RE = re.compile(r"^Grounding:\s*(\d{4})/(\d{2})/(\d{2})\|(\d{2}):(\d{2})\|([A-Za-z]{2})", re.IGNORECASE)

_ZONE_TABLES = ("/usr/share/zoneinfo/zone.tab", "/usr/share/zoneinfo/zone1970.tab")


def _country_of(candidate: Any) -> Optional[str]:
    """``fr_FR.UTF-8`` -> ``FR``; a bare two-letter value as is; else None (``UTF-8`` -> None)."""
    text = str(candidate or "").strip().split(".", 1)[0].split("@", 1)[0].strip()
    if len(text) == 2 and text.isalpha():
        return text.upper()
    parts = re.split(r"[_-]", text)
    for part in parts[1:]:
        if len(part) == 2 and part.isalpha():
            return part.upper()
    return None


def _iana_zone() -> Optional[str]:
    tz = os.environ.get("TZ") or ""
    if "/" in tz:
        return tz.lstrip(":")
    try:
        text = Path("/etc/timezone").read_text(encoding="utf-8").strip()
        if text:
            return text
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return None
    return target.split("/zoneinfo/", 1)[1] if "/zoneinfo/" in target else None


def _country_of_zone(zone: str) -> Optional[str]:
    for table in _ZONE_TABLES:
        try:
            lines = Path(table).read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) >= 3 and cols[2].strip() == zone:
                code = cols[0].split(",", 1)[0].strip()
                if len(code) == 2 and code.isalpha():
                    return code.upper()
    return None


def detect_country() -> str:
    """Env ``ABSTRACT_COUNTRY``, ``ABSTRACTFRAMEWORK_COUNTRY``; the locale; ``LC_ALL``/``LANG``/``LC_CTYPE``; the
    IANA time zone's country; else ``XX``."""
    candidates: List[Any] = [os.environ.get("ABSTRACT_COUNTRY"), os.environ.get("ABSTRACTFRAMEWORK_COUNTRY")]
    try:
        candidates.append(locale.getlocale()[0])
    except (ValueError, TypeError):
        pass
    candidates += [os.environ.get(k) for k in ("LC_ALL", "LANG", "LC_CTYPE")]
    for candidate in candidates:
        code = _country_of(candidate)
        if code:
            return code
    zone = _iana_zone()
    return (_country_of_zone(zone) if zone else None) or "XX"


def system_context_header(now: Optional[datetime] = None) -> str:
    """``[YYYY-MM-DD HH:MM:SS CC]`` for now (local time of this process)."""
    now = now or datetime.now().astimezone()
    return f"[{now.strftime('%Y-%m-%d %H:%M:%S')} {detect_country()}]"


def _first_line(text: str) -> Tuple[str, str]:
    stripped = text.lstrip()
    line, _, rest = stripped.partition("\n")
    return line, rest


def _prefix(text: Any, header: str) -> str:
    text = "" if text is None else str(text)
    if not text.strip():
        return header
    line, rest = _first_line(text)
    if HEADER_RE.match(line):
        return text
    legacy = LEGACY_RE.match(line)
    if legacy:
        y, mo, d, h, mi, cc = legacy.groups()
        tail = (line[legacy.end():].strip() + ("\n" + rest if rest else "")).strip()
        stamp = f"[{y}-{mo}-{d} {h}:{mi}:00 {cc.upper()}]"
        return f"{stamp} {tail}" if tail else stamp
    return f"{header} {text}"


def inject_turn_grounding(prompt: Any, messages: Any, *, header: Optional[str] = None
                          ) -> Tuple[Any, Optional[List[Dict[str, Any]]]]:
    """The grounded ``(prompt, messages)``: the prompt when non-blank, else the last user message (a header-only
    user message is appended when there is none); with neither, both unchanged. Messages are copied."""
    has_prompt = isinstance(prompt, str) and bool(prompt.strip())
    if not has_prompt and not messages:
        return prompt, messages if isinstance(messages, list) or messages is None else None
    header = header or system_context_header()
    if has_prompt:
        copied = [dict(m) if isinstance(m, dict) else m for m in messages] if isinstance(messages, list) else messages
        return _prefix(prompt, header), copied
    out = [dict(m) if isinstance(m, dict) else {"role": "user", "content": str(m)} for m in messages]
    for message in reversed(out):
        if message.get("role") == "user":
            content = message.get("content")
            if content is None or isinstance(content, str):
                message["content"] = _prefix(content, header)
            break
    else:
        out.append({"role": "user", "content": header})
    return prompt, out


def strip_system_context_header(system_prompt: Any) -> Any:
    """``system_prompt`` without a first line that is a header (either form); an all-header prompt becomes None."""
    if not isinstance(system_prompt, str):
        return system_prompt
    line, rest = _first_line(system_prompt)
    match = HEADER_RE.match(line) or LEGACY_RE.match(line)
    if not match:
        return system_prompt
    remaining = (line[match.end():] + ("\n" + rest if rest else "")).lstrip()
    return remaining or None


__all__ = ["HEADER_RE", "LEGACY_RE", "detect_country", "system_context_header", "inject_turn_grounding",
           "strip_system_context_header"]
