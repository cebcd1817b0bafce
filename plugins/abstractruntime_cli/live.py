"""The live views: ``runs watch RUN``, ``runs list --watch`` and the ``runs tree RUN`` view (docs/cli.md).

They read the store every ``--interval`` seconds (opened read-only: another process -- a worker, a scheduler, a
host -- advances the runs). Three renderings of the same data:

* a terminal: a ``rich`` live view redrawn in place (in colour unless ``NO_COLOR``);
* a pipe or a file: plain text, one line per change, nothing redrawn (``runs watch``: the run's state when it
  changes and each ledger row once, as it is appended);
* ``--json``: one JSON document per line and per change (shapes in docs/cli.md).

Ctrl-C ends a view with exit code 0. ``runs watch`` also ends when the run ends (``--exit-status``: 1 if it ended
failed or cancelled).
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

from abstractruntime_pluginkit.console import color_enabled, is_terminal, rich_console
from abstractruntime_pluginkit.follow import LedgerFollower

from abstractruntime_cli.commands import LEDGER_COLUMNS, RUN_COLUMNS, ledger_row, list_runs
from abstractruntime_cli.output import cell, emit_json_line, plain_table, rich_table, styled


def _live_terminal() -> bool:
    """Redraw in place: stdout is a terminal that can do it (colour or not)."""
    import os

    return is_terminal(sys.stdout) and os.environ.get("TERM", "") != "dumb"


def state_event(state: Any) -> Dict[str, Any]:
    waiting = state.waiting.to_dict() if state.waiting is not None else None
    return {"event": "state", "run_id": state.run_id, "workflow_id": state.workflow_id,
            "status": state.status.value, "current_node": state.current_node, "step": getattr(state, "step", None),
            "waiting": waiting, "error": state.error, "updated_at": state.updated_at}


def _key(state: Any) -> Tuple[Any, ...]:
    return (state.status, state.current_node, state.waiting, state.error)


def wait_text(waiting: Any) -> str:
    """``user: "Name?" [yes/no]``, ``until 2026-...``, ``event order:paid``."""
    if waiting is None:
        return ""
    reason = getattr(waiting.reason, "value", waiting.reason)
    parts = [str(reason)]
    if waiting.prompt:
        parts.append(repr(waiting.prompt) if len(waiting.prompt) <= 80 else repr(waiting.prompt[:77] + "..."))
    if waiting.choices:
        parts.append("[" + "/".join(str(c) for c in waiting.choices) + "]")
    if waiting.until:
        parts.append(f"until {waiting.until}")
    if waiting.wait_key and not waiting.prompt:
        parts.append(f"key {waiting.wait_key}")
    return " ".join(parts)


def status_line(state: Any) -> str:
    text = f"{state.status.value} at node {state.current_node}"
    if state.waiting is not None:
        text += f" -- waiting for {wait_text(state.waiting)}"
    if state.error:
        text += f" -- error: {' '.join(str(state.error).split())}"
    return text


def row_line(number: int, row: Dict[str, Any]) -> str:
    flat = ledger_row(number, row)
    fields = [f"#{number}", flat["node"], flat["status"], flat["effect"] or "-"]
    if flat["attempt"] not in (None, 1):
        fields.append(f"attempt {flat['attempt']}")
    if flat["error"]:
        fields.append(f"error: {' '.join(str(flat['error']).split())}")
    return "  ".join(str(f) for f in fields)


def _run_view(state: Any, rows: List[Dict[str, Any]], interval: float, total: int) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("run", f"{state.run_id}  ({state.workflow_id})")
    head.add_row("status", styled(state.status.value))
    head.add_row("node", f"{state.current_node}  (step {getattr(state, 'step', '?')})")
    if state.waiting is not None:
        head.add_row("waiting", Text(wait_text(state.waiting), style="yellow"))
    if state.error:
        head.add_row("error", Text(str(state.error), style="red"))
    head.add_row("updated", str(state.updated_at or ""))
    shown = f"last {len(rows)} of {total}" if len(rows) < total else f"{total}"
    ledger = rich_table(rows, LEDGER_COLUMNS, title=f"ledger ({shown} rows)")
    footer = Text(f"every {interval:g} s -- Ctrl-C to stop" if not state.status.is_terminal else "run ended",
                  style="dim")
    return Group(head, ledger, footer)


def watch_run(args: Any, runtime: Any) -> int:
    state = runtime.get_state(args.run_id)  # an unknown run: error, exit 2
    follower = LedgerFollower(runtime, args.run_id)
    try:
        if args.json:
            state = _watch_json(runtime, follower, state, args.interval)
        elif _live_terminal():
            state = _watch_live(runtime, follower, state, args.interval, args.rows)
        else:
            state = _watch_plain(runtime, follower, state, args.interval)
    except KeyboardInterrupt:
        if args.json:
            emit_json_line({"event": "stopped", "run_id": args.run_id})
        else:
            print("stopped watching (the run goes on)", file=sys.stderr)
        return 0
    if getattr(args, "exit_status", False) and state.status.value in ("failed", "cancelled"):
        return 1
    return 0


def _next(runtime: Any, run_id: str, interval: float) -> Any:
    time.sleep(interval)
    return runtime.get_state(run_id)


def _watch_json(runtime: Any, follower: LedgerFollower, state: Any, interval: float) -> Any:
    last = None
    while True:
        if _key(state) != last:
            emit_json_line(state_event(state))
            last = _key(state)
        for number, row in follower.poll():
            emit_json_line({"event": "ledger", "record": number, "row": row})
        if state.status.is_terminal:
            emit_json_line({"event": "end", "run_id": state.run_id, "status": state.status.value,
                            "output": state.output, "error": state.error})
            return state
        state = _next(runtime, state.run_id, interval)


def _watch_plain(runtime: Any, follower: LedgerFollower, state: Any, interval: float) -> Any:
    print(f"run {state.run_id} (workflow {state.workflow_id})", flush=True)
    last = None
    while True:
        if _key(state) != last:
            print(f"status: {status_line(state)}", flush=True)
            last = _key(state)
        for number, row in follower.poll():
            print(row_line(number, row), flush=True)
        if state.status.is_terminal:
            print(f"run {state.status.value}", flush=True)
            return state
        state = _next(runtime, state.run_id, interval)


def _watch_live(runtime: Any, follower: LedgerFollower, state: Any, interval: float, keep: int) -> Any:
    from rich.live import Live

    rows: List[Dict[str, Any]] = []
    console = rich_console()
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while True:
            rows.extend(ledger_row(n, r) for n, r in follower.poll())
            del rows[:-keep]
            live.update(_run_view(state, rows, interval, follower.seen), refresh=True)
            if state.status.is_terminal:
                return state
            state = _next(runtime, state.run_id, interval)


# --- runs list --watch ---------------------------------------------------------------------------------------------

def _now() -> str:
    return datetime.now(timezone.utc).astimezone().strftime("%H:%M:%S")


def watch_list(args: Any, runtime: Any) -> int:
    count: Optional[int] = getattr(args, "count", None)
    last: Any = None
    live = None
    done = 0
    try:
        if not args.json and _live_terminal():
            from rich.live import Live

            live = Live(console=rich_console(), auto_refresh=False).__enter__()
        while True:
            rows = list_runs(runtime, args)
            if live is not None:
                from rich.console import Group
                from rich.text import Text

                footer = Text(f"{len(rows)} run(s) -- refreshed {_now()} -- every {args.interval:g} s -- Ctrl-C to "
                              f"stop", style="dim")
                live.update(Group(rich_table(rows, RUN_COLUMNS), footer), refresh=True)
            elif rows != last:
                if args.json:
                    emit_json_line({"event": "runs", "at": datetime.now(timezone.utc).isoformat(), "runs": rows})
                else:
                    print(f"-- {_now()}: {len(rows)} run(s)")
                    print(plain_table(rows, RUN_COLUMNS), flush=True)
            last = rows
            done += 1
            if count is not None and done >= count:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        if live is not None:
            live.__exit__(None, None, None)


# --- runs tree ------------------------------------------------------------------------------------------------------

def _node(state: Any) -> Dict[str, Any]:
    return {"run_id": state.run_id, "workflow_id": state.workflow_id, "status": state.status.value,
            "current_node": state.current_node, "waiting_reason": (getattr(state.waiting.reason, "value", None)
                                                                   if state.waiting is not None else None),
            "children": []}


def run_tree(runtime: Any, run_id: str) -> Dict[str, Any]:
    """``{"run_id", "root": node}``; a node is ``{run_id, workflow_id, status, current_node, waiting_reason,
    children: [node, ...]}`` (children oldest first)."""
    from abstractruntime.errors import StoreError
    from abstractruntime_pluginkit.queries import answers_run_queries
    from abstractruntime_pluginkit.run_tree import root_of

    state = runtime.get_state(run_id)
    store = runtime.run_store
    if not answers_run_queries(store):
        raise StoreError(f"the store {type(store).__name__} cannot list a run's children (no run queries); "
                              f"use `runs show` on each run instead")
    root = root_of(store, state)
    top = _node(root)
    seen = {root.run_id}
    todo = [(root.run_id, top)]
    while todo:
        parent_id, node = todo.pop()
        children = sorted(store.list_children(parent_run_id=parent_id), key=lambda c: (c.created_at or "", c.run_id))
        for child in children:
            if child.run_id in seen:
                continue
            seen.add(child.run_id)
            child_node = _node(child)
            node["children"].append(child_node)
            todo.append((child.run_id, child_node))
    return {"run_id": run_id, "root": top}


def _label(node: Dict[str, Any], marked: str) -> str:
    text = f"{node['run_id']}  {node['workflow_id']}  {node['status']}  at {node['current_node']}"
    if node["waiting_reason"]:
        text += f"  (waiting: {node['waiting_reason']})"
    return text + ("  <-" if node["run_id"] == marked else "")


def runs_tree(args: Any, runtime: Any) -> int:
    tree = run_tree(runtime, args.run_id)
    if args.json:
        from abstractruntime_cli.output import emit_json

        emit_json(tree)
        return 0
    if not color_enabled(sys.stdout):
        def walk(node: Dict[str, Any], depth: int) -> None:
            print("  " * depth + _label(node, args.run_id))
            for child in node["children"]:
                walk(child, depth + 1)

        walk(tree["root"], 0)
        return 0
    from rich.text import Text
    from rich.tree import Tree

    def label(node: Dict[str, Any]) -> Any:
        text = Text(f"{node['run_id']}  ", style="bold" if node["run_id"] == args.run_id else "")
        text.append(f"{node['workflow_id']}  ")
        text.append_text(styled(node["status"]))
        text.append(f"  at {node['current_node']}")
        if node["waiting_reason"]:
            text.append(f"  (waiting: {node['waiting_reason']})", style="yellow")
        if node["run_id"] == args.run_id:
            text.append("  <-", style="bold")
        return text

    rendered = Tree(label(tree["root"]))
    todo = [(tree["root"], rendered)]
    while todo:
        node, branch = todo.pop(0)
        for child in node["children"]:
            todo.append((child, branch.add(label(child))))
    rich_console().print(rendered)
    return 0


__all__ = ["watch_run", "watch_list", "runs_tree", "run_tree", "LedgerFollower", "state_event", "cell"]
