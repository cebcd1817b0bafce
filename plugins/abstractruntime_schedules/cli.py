"""``abstractruntime schedules list|add|remove|pause|resume``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, List

from abstractruntime.descriptors import CliCommandDescriptor
from abstractruntime.errors import ValidationError

from .choices import CATCH_UPS, OVERLAPS

if TYPE_CHECKING:
    from .book import Schedule

# The schedule book (zoneinfo, cronsim, the run queries) is imported when a schedules command runs, not when the
# command line builds its parser (every `abstractruntime` invocation, --help included; issue 23).

_COLUMNS = ["schedule_id", "workflow_id", "when", "overlap", "catch_up", "paused", "next_fire_time",
            "last_fire_time", "fired"]


def _row(schedule: Schedule) -> Dict[str, Any]:
    data = schedule.to_dict()
    data["when"] = schedule.timing.describe()
    data["next_fire_time"] = None if schedule.paused else schedule.next_fire_time()
    return data


def _cli_show(args: Any, rows: List[Dict[str, Any]]) -> None:
    from abstractruntime_cli.output import show

    show(rows, args.json, _COLUMNS)


def _cli_list(args: Any, runtime: Any) -> int:
    from . import book

    _cli_show(args, [_row(book.schedule_of(r)) for r in book.active_records(runtime)])
    return 0


def _cli_add_args(parser: Any) -> None:
    parser.add_argument("schedule_id")
    parser.add_argument("workflow_id")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="five-field cron expression, e.g. '*/5 * * * *'")
    when.add_argument("--every", type=float, metavar="SECONDS", help="every N whole seconds (epoch-aligned)")
    parser.add_argument("--timezone", default=None, help="IANA time zone cron is evaluated in (default UTC)")
    parser.add_argument("--vars", default=None, metavar="JSON", help="the runs' variables as a JSON object")
    parser.add_argument("--overlap", choices=OVERLAPS, default="skip")
    parser.add_argument("--catch-up", dest="catch_up", choices=CATCH_UPS, default="none")
    parser.add_argument("--replace", action="store_true", help="redefine an existing schedule")


def _cli_add(args: Any, runtime: Any) -> int:
    from abstractruntime_pluginkit.jsonload import loads_bounded

    from . import book

    variables: Any = {}
    if args.vars is not None:
        try:
            variables = loads_bounded(args.vars, what="--vars")
        except json.JSONDecodeError as exc:
            raise ValidationError(f"--vars is not valid JSON: {exc}") from None
    schedule = book.add(runtime, book.new_schedule(
        schedule_id=args.schedule_id, workflow_id=args.workflow_id, cron=args.cron, every_s=args.every,
        vars=variables, timezone=args.timezone, overlap=args.overlap, catch_up=args.catch_up), replace=args.replace)
    _cli_show(args, [_row(schedule)])
    return 0


def _id_arg(parser: Any) -> None:
    parser.add_argument("schedule_id")


def _cli_change(action: str) -> Any:
    def run(args: Any, runtime: Any) -> int:
        from . import book

        _cli_show(args, [_row(book.change(runtime, args.schedule_id, action))])
        return 0

    return run


def cli_commands() -> List[CliCommandDescriptor]:
    return [
        CliCommandDescriptor("schedules list", "list the schedules (next and last fire times)", lambda p: None,
                             _cli_list, store="read"),
        CliCommandDescriptor("schedules add", "add a schedule: a run of WORKFLOW_ID at every fire time",
                             _cli_add_args, _cli_add),
        CliCommandDescriptor("schedules remove", "remove a schedule (its runs are untouched)", _id_arg,
                             _cli_change("removed")),
        CliCommandDescriptor("schedules pause", "pause a schedule", _id_arg, _cli_change("paused")),
        CliCommandDescriptor("schedules resume", "resume a paused schedule from now on", _id_arg,
                             _cli_change("resumed")),
    ]


__all__ = ["cli_commands"]
