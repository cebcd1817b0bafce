"""The ``abstractruntime`` command line (console script ``abstractruntime``, ``python -m abstractruntime_cli``).
Every subcommand is contributed by a plugin (``abstractruntime_register_cli_commands``); this module only builds
the parser and the runtime, and turns every outcome into one of the documented exit codes (docs/cli.md):

* 0 -- done; 1 -- the command found a problem and says which (a tampered ledger, a damaged record, a failed plugin,
  a run that ended failed with ``runs watch --exit-status``, ``doctor`` findings);
* 2 -- the command could not do its work: a usage error, a bad configuration, a store that cannot be opened, an
  unknown run, bad input. One ``error: ...`` line on stderr says what is wrong and what to do; ``-v`` adds the
  traceback. 130 -- interrupted (Ctrl-C), except for the live views, which end with 0 on Ctrl-C.

A command named with spaces (``"ledger verify"``) becomes a nested subcommand; every command accepts ``--json``
(before or after its name) unless it uses ``--json`` for its input (``respond``: put it before the command). The
store comes from ``--store``, else the configuration (``--config`` / ``ABSTRACTRUNTIME_CONFIG`` /
``ABSTRACTRUNTIME_STORE`` / the default), and is opened as the command's descriptor says (``store``): read-only
commands create nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, NoReturn, Optional, Sequence

import attrs

EXIT_OK, EXIT_PROBLEM, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
JSON_HELP = "machine-readable JSON output (its shape for each command: docs/cli.md)"


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line: ``error: ...`` and where the usage is (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"error: {message} (usage: {self.prog} --help)\n")


def _build_parser(commands: List[Any]) -> argparse.ArgumentParser:
    parser = _Parser(prog="abstractruntime", description="Inspect and control AbstractRuntime runs.",
                     epilog="Exit codes: 0 done, 1 a problem found (listed), 2 an error (one 'error:' line), "
                            "130 interrupted. Reference: docs/cli.md.")
    parser.add_argument("--store", help="store URL, e.g. lmdb:///var/lib/app/runs (default: configuration)")
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--json", action="store_true", help=JSON_HELP)
    parser.add_argument("--no-color", action="store_true", help="no colour (as NO_COLOR=1 does)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug events and tracebacks to stderr")
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
                group_parser.set_defaults(_group=group_parser)
            target = groups[key]
        leaf = target.add_parser(words[-1], help=desc.help, description=desc.help)
        desc.configure(leaf)
        if "--json" not in leaf._option_string_actions:  # the global --json, also accepted after the command
            leaf.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON_HELP)
        leaf.set_defaults(_command=desc, _group=None)
    return parser


def _settings_for(settings: Any, store: str) -> Any:
    """The configuration a command's runtime is built with: ``store="read"`` opens the store ``read_only``
    (nothing is created: no store, no lock file), ``"none"`` uses no store at all (an in-memory one)."""
    if store == "none":
        return attrs.evolve(settings, store="memory://", store_options={})
    if store == "read":
        return attrs.evolve(settings, store_options={**settings.store_options, "read_only": True})
    return settings


def _error(exc: BaseException, verbose: bool, prefix: str = "") -> int:
    """One ``error: ...`` line (the message says what to do); the traceback only with ``-v``."""
    if verbose:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    from abstractruntime.errors import UnknownRunError

    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    text = " ".join(str(message).split()) or type(exc).__name__
    if isinstance(exc, UnknownRunError) and "runs list" not in text:
        text += " (in this store; `abstractruntime runs list` lists its runs, --store names another)"
    print(f"error: {prefix}{text}", file=sys.stderr)
    return EXIT_ERROR


def _unexpected(exc: BaseException, verbose: bool) -> int:
    _error(exc, verbose, prefix=f"unexpected {type(exc).__name__}: ")
    if not verbose:
        print("error: this is a bug: run the command again with -v for the traceback and report it",
              file=sys.stderr)
    return EXIT_ERROR


def _pre_parse(args_list: List[str]) -> argparse.Namespace:
    """The global options that decide the plugin set and the store, before the plugins' commands are known."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--store")
    pre.add_argument("--config")
    pre.add_argument("--no-color", action="store_true")
    pre.add_argument("-v", "--verbose", action="store_true")
    known, _rest = pre.parse_known_args(args_list)
    return known


def main(argv: Optional[Sequence[str]] = None) -> int:
    from abstractruntime.errors import AbstractRuntimeError
    from abstractruntime.plugins import Hooks, build_plugin_manager
    from abstractruntime.settings import load_settings

    args_list = list(sys.argv[1:] if argv is None else argv)
    known = _pre_parse(args_list)
    if known.verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)  # the CLI is an application: it may configure
    if known.no_color and not os.environ.get("NO_COLOR"):
        os.environ["NO_COLOR"] = "1"  # read by every drawing helper; restored for a host that calls main()
        try:
            return main([a for a in args_list if a != "--no-color"])
        finally:
            os.environ.pop("NO_COLOR", None)
    try:
        settings = load_settings(known.config) if known.config else load_settings()
        if known.store is not None:
            settings = attrs.evolve(settings, store=known.store)  # an empty --store is an error, not the default
        # The commands come from the plugins; the store is opened only once the command says how it uses it.
        pm, infos = build_plugin_manager(settings.plugins)
        commands = [d for _p, d in Hooks(pm, strict=settings.plugins.strict, infos=infos).cli_commands()]
    except AbstractRuntimeError as exc:
        return _error(exc, known.verbose)
    parser = _build_parser(commands)
    if os.environ.get("_ARGCOMPLETE"):  # a shell asks for completions (abstractruntime completion SHELL)
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(args_list)
    command = getattr(args, "_command", None)
    if command is None:
        (getattr(args, "_group", None) or parser).print_help()
        return EXIT_ERROR
    args.cli_settings = settings  # the configuration as given (doctor reads it; a "none" command's runtime has none)
    return _run(command, args, settings, known.verbose)


def _run(command: Any, args: argparse.Namespace, settings: Any, verbose: bool) -> int:
    from abstractruntime.errors import AbstractRuntimeError
    from abstractruntime.runtime import Runtime

    try:
        runtime = Runtime(settings=_settings_for(settings, command.store))
    except (AbstractRuntimeError, OSError) as exc:
        return _error(exc, verbose)
    except Exception as exc:  # noqa: BLE001 - a plugin's bug: still one line, the traceback with -v
        return _unexpected(exc, verbose)
    try:
        return int(command.run(args, runtime) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `abstractruntime runs list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (AbstractRuntimeError, KeyError, ValueError, OSError) as exc:
        return _error(exc, verbose)
    except Exception as exc:  # noqa: BLE001
        return _unexpected(exc, verbose)
    finally:
        runtime.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
