"""Output helpers for CLI commands: tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, List, Sequence


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def table(rows: Sequence[Dict[str, Any]], columns: List[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def show(data: Any, as_json: bool, columns: List[str] = ()) -> None:
    if as_json:
        emit_json(data)
    elif isinstance(data, list):
        table(data, list(columns))
    else:
        width = max((len(k) for k in data), default=0)
        for key, value in data.items():
            if isinstance(value, (dict, list)):
                value = json.dumps(value, ensure_ascii=False, default=str)
            print(f"{key.ljust(width)}  {'' if value is None else value}")


__all__ = ["emit_json", "table", "show"]
