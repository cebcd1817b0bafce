"""Builtin plugin ``cli``: the core subcommands of the ``abstractruntime`` command line (docs/cli.md).

``plugins``, ``runs list`` (``--watch``), ``runs show``, ``runs watch``, ``runs tree``, ``ledger show``,
``respond``, ``cancel``, ``store check``, ``doctor``, ``completion``. Other plugins add their own (``ledger verify``
from provenance, ``snapshots ...`` from snapshots, ``export`` / ``import`` from history, ...).

This package only declares the commands and their arguments: it is imported whenever the command line (or a
runtime) starts, so each command's implementation is imported when that command runs.
"""

from __future__ import annotations

from typing import Any, List

from abstractruntime import RunStatus, hookimpl
from abstractruntime.descriptors import CliCommandDescriptor
from abstractruntime_pluginkit.lazy import lazy_exports, lazy_function

__getattr__, __dir__ = lazy_exports(__name__, {"deliver_answer": ".commands"})

MAX_LIST_LIMIT = 1_000_000
SHELLS = ("bash", "zsh", "fish")


def _list_limit(text: str) -> int:
    """``--limit``: a whole number from 1 to MAX_LIST_LIMIT (argparse reports anything else, exit 2)."""
    import argparse  # (this package is imported by every runtime: argparse only when the command line parses)

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= n <= MAX_LIST_LIMIT:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_LIST_LIMIT}, got {n}")
    return n


def _interval(parser: Any, default: float) -> None:
    from abstractruntime_pluginkit.cliargs import positive_seconds

    parser.add_argument("--interval", type=positive_seconds, default=default, metavar="S",
                        help=f"seconds between two reads of the store (default {default:g})")


def _runs_list_args(parser: Any) -> None:
    parser.add_argument("--status", choices=[s.value for s in RunStatus])
    parser.add_argument("--workflow")
    parser.add_argument("--limit", type=_list_limit, default=50,
                        help=f"at most N runs (1-{MAX_LIST_LIMIT}, default 50)")
    parser.add_argument("--watch", action="store_true", help="refresh the list until Ctrl-C")
    _interval(parser, 2.0)
    parser.add_argument("--count", type=_list_limit, metavar="N", help="with --watch: stop after N refreshes")


def _run_id_arg(parser: Any) -> None:
    parser.add_argument("run_id")


def _runs_watch_args(parser: Any) -> None:
    parser.add_argument("run_id")
    _interval(parser, 0.5)
    parser.add_argument("--exit-status", action="store_true",
                        help="exit 1 if the run ends failed or cancelled (default: 0 whenever it ends)")
    parser.add_argument("--rows", type=_list_limit, default=15, metavar="N",
                        help="ledger rows kept on screen in the live view (default 15)")


def _respond_args(parser: Any) -> None:
    parser.add_argument("run_id")
    parser.add_argument("--json", dest="payload", required=True, metavar="PAYLOAD",
                        help='the answer as a JSON object, e.g. \'{"text": "yes"}\' (for JSON output put --json '
                             'before the command: abstractruntime --json respond ...)')
    parser.add_argument("--wait-key", help="the wait key to answer (default: the one the run waits for)")


def _cancel_args(parser: Any) -> None:
    parser.add_argument("run_id")
    parser.add_argument("--reason")


def _completion_args(parser: Any) -> None:
    parser.add_argument("shell", choices=SHELLS, help="the shell to print the completion script for")


def _nothing(parser: Any) -> None:
    return None


def _run(module: str, name: str) -> Any:
    return lazy_function(__name__, module, name)


@hookimpl
def abstractruntime_register_cli_commands() -> List[CliCommandDescriptor]:
    return [
        CliCommandDescriptor("plugins", "list plugins: name, distribution, version, status, error",
                             _nothing, _run(".commands", "plugins"), store="none"),
        CliCommandDescriptor("runs list", "list runs (newest first); --watch refreshes the list", _runs_list_args,
                             _run(".commands", "runs_list"), store="read"),
        CliCommandDescriptor("runs show", "show one run", _run_id_arg, _run(".commands", "runs_show"), store="read"),
        CliCommandDescriptor("runs watch", "follow a run live (status, node, ledger rows, waits) until it ends",
                             _runs_watch_args, _run(".live", "watch_run"), store="read"),
        CliCommandDescriptor("runs tree", "a run's tree: its root, parents and children, with their statuses",
                             _run_id_arg, _run(".live", "runs_tree"), store="read"),
        CliCommandDescriptor("ledger show", "show a run's ledger", _run_id_arg, _run(".commands", "ledger_show"),
                             store="read"),
        CliCommandDescriptor("respond", "answer a waiting run (it continues when a worker ticks it)",
                             _respond_args, _run(".commands", "respond")),
        CliCommandDescriptor("cancel", "cancel a run", _cancel_args, _run(".commands", "cancel")),
        CliCommandDescriptor("store check", "list damaged records (corrupt checkpoints or ledger records); exit 1 "
                             "if any", _nothing, _run(".store_check", "store_check"), store="read"),
        CliCommandDescriptor("doctor", "check the configuration, the store, the plugins and optional dependencies; "
                             "exit 1 and what to fix if anything is wrong", _nothing, _run(".doctor", "doctor"),
                             store="none"),
        CliCommandDescriptor("completion", "print the shell completion script (bash, zsh or fish)",
                             _completion_args, _run(".completion", "completion"), store="none"),
    ]
