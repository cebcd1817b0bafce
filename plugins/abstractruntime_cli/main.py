"""The ``abstractruntime`` command line (console script ``abstractruntime``, ``python -m abstractruntime_cli``).
Every subcommand is contributed by a plugin (``abstractruntime_register_cli_commands``); this module only builds
the parser and the runtime.

A command named with spaces (``"ledger verify"``) becomes a nested subcommand. The store comes from ``--store``,
else the configuration (``--config`` / ``ABSTRACTRUNTIME_CONFIG`` / ``ABSTRACTRUNTIME_STORE`` / the default).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Dict, List, Optional, Sequence

import attrs


def _build_parser(commands: List[Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="abstractruntime", description="Inspect and control AbstractRuntime runs.")
    parser.add_argument("--store", help="store URL, e.g. lmdb:///var/lib/app/runs (default: configuration)")
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug events to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: Dict[str, Any] = {}
    for desc in sorted(commands, key=lambda d: d.name):
        words = desc.name.split()
        target = sub
        for depth, word in enumerate(words[:-1]):
            key = " ".join(words[: depth + 1])
            if key not in groups:
                group_parser = target.add_parser(word, help=f"{key} commands")
                groups[key] = group_parser.add_subparsers(dest=f"command_{depth + 1}", metavar="COMMAND")
            target = groups[key]
        leaf = target.add_parser(words[-1], help=desc.help, description=desc.help)
        desc.configure(leaf)
        leaf.set_defaults(_command=desc)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from abstractruntime.errors import AbstractRuntimeError
    from abstractruntime.runtime import Runtime
    from abstractruntime.settings import load_settings

    args_list = list(sys.argv[1:] if argv is None else argv)
    # Parse global options first so the runtime (and so the plugin set) follows --config/--store.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--store")
    pre.add_argument("--config")
    pre.add_argument("-v", "--verbose", action="store_true")
    known, _rest = pre.parse_known_args(args_list)
    if known.verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)  # the CLI is an application: it may configure
    try:
        settings = load_settings(known.config) if known.config else load_settings()
        if known.store:
            settings = attrs.evolve(settings, store=known.store)
        runtime = Runtime(settings=settings)
    except AbstractRuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        commands = [d for _p, d in runtime.hooks.cli_commands()]
        parser = _build_parser(commands)
        args = parser.parse_args(args_list)
        command = getattr(args, "_command", None)
        if command is None:
            parser.print_help()
            return 2
        try:
            return int(command.run(args, runtime) or 0)
        except (AbstractRuntimeError, KeyError, ValueError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"error: {message}", file=sys.stderr)
            return 2
    finally:
        runtime.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
