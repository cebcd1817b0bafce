"""The ``abstractruntime`` command line (console script ``abstractruntime``, ``python -m abstractruntime_cli``).
Every subcommand is contributed by a plugin (``abstractruntime_register_cli_commands``); this module only builds
the parser and the runtime.

A command named with spaces (``"ledger verify"``) becomes a nested subcommand. The store comes from ``--store``,
else the configuration (``--config`` / ``ABSTRACTRUNTIME_CONFIG`` / ``ABSTRACTRUNTIME_STORE`` / the default), and is
opened as the command's descriptor says (``store``): read-only commands create nothing.
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


def _settings_for(settings: Any, store: str) -> Any:
    """The configuration a command's runtime is built with: ``store="read"`` opens the store ``read_only``
    (nothing is created: no store, no lock file), ``"none"`` uses no store at all (an in-memory one)."""
    if store == "none":
        return attrs.evolve(settings, store="memory://", store_options={})
    if store == "read":
        return attrs.evolve(settings, store_options={**settings.store_options, "read_only": True})
    return settings


def main(argv: Optional[Sequence[str]] = None) -> int:
    from abstractruntime.errors import AbstractRuntimeError
    from abstractruntime.plugins import Hooks, build_plugin_manager
    from abstractruntime.runtime import Runtime
    from abstractruntime.settings import load_settings

    args_list = list(sys.argv[1:] if argv is None else argv)
    # Parse global options first so the plugin set and the store follow --config/--store.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--store")
    pre.add_argument("--config")
    pre.add_argument("-v", "--verbose", action="store_true")
    known, _rest = pre.parse_known_args(args_list)
    if known.verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)  # the CLI is an application: it may configure
    try:
        settings = load_settings(known.config) if known.config else load_settings()
        if known.store is not None:
            settings = attrs.evolve(settings, store=known.store)  # an empty --store is an error, not the default
        # The commands come from the plugins; the store is opened only once the command says how it uses it.
        pm, infos = build_plugin_manager(settings.plugins)
        commands = [d for _p, d in Hooks(pm, strict=settings.plugins.strict, infos=infos).cli_commands()]
    except AbstractRuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser = _build_parser(commands)
    args = parser.parse_args(args_list)
    command = getattr(args, "_command", None)
    if command is None:
        parser.print_help()
        return 2
    try:
        runtime = Runtime(settings=_settings_for(settings, command.store))
    except (AbstractRuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(command.run(args, runtime) or 0)
    except (AbstractRuntimeError, KeyError, ValueError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    finally:
        runtime.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
