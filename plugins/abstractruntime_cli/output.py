"""Output helpers for CLI commands: tables for people, ``--json`` for scripts.

On a terminal (and without ``NO_COLOR``) tables are drawn with ``rich``, statuses in colour; to a pipe or a file
they are plain text, columns separated by two spaces, with an upper-case header -- the same bytes whatever the
terminal, for ``grep``, ``awk`` and scripts (which should use ``--json`` anyway).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, List, Sequence

from abstractruntime_pluginkit.console import color_enabled, rich_console

#: rich styles of run and step statuses
STATUS_STYLES = {"completed": "green", "ok": "green", "loaded": "green", "running": "cyan", "started": "cyan",
                 "waiting": "yellow", "failed": "bold red", "cancelled": "magenta", "blocked": "magenta",
                 "paused": "yellow", "error": "bold red", "warning": "yellow"}


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def emit_json_line(data: Any) -> None:
    """One JSON document on one line (the streams of ``--watch`` commands), flushed at once."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def plain_table(rows: Sequence[Dict[str, Any]], columns: List[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines.extend("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)
    return "\n".join(lines)


def styled(value: Any) -> Any:
    """A ``rich.text.Text`` of a status-like value in its colour (other values as plain text)."""
    from rich.text import Text

    text = cell(value)
    return Text(text, style=STATUS_STYLES.get(text.split(" ")[-1], ""))


def rich_table(rows: Sequence[Dict[str, Any]], columns: List[str], title: Any = None) -> Any:
    from rich import box
    from rich.table import Table

    out = Table(*[c.upper() for c in columns], box=box.SIMPLE_HEAD, title=title, title_justify="left",
                header_style="bold", pad_edge=False)
    for row in rows:
        out.add_row(*[styled(row.get(c)) if c in ("status", "STATUS") else cell(row.get(c)) for c in columns])
    return out


def table(rows: Sequence[Dict[str, Any]], columns: List[str]) -> None:
    if rows and color_enabled(sys.stdout):
        rich_console().print(rich_table(rows, columns))
    else:
        print(plain_table(rows, columns))


def show(data: Any, as_json: bool, columns: List[str] = ()) -> None:
    if as_json:
        emit_json(data)
    elif isinstance(data, list):
        table(data, list(columns))
    else:
        width = max((len(k) for k in data), default=0)
        for key, value in data.items():
            print(f"{key.ljust(width)}  {cell(value)}")


__all__ = ["emit_json", "emit_json_line", "table", "plain_table", "rich_table", "show", "cell", "styled",
           "STATUS_STYLES"]
