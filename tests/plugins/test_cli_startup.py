"""Issue 23, start-up of the command line: ``abstractruntime --help`` and ``runs list`` build every plugin's commands
(every plugin package is imported and its ``abstractruntime_register_cli_commands`` called) and a runtime, so what
they import is paid by every invocation. Checked by what is imported, in a fresh process (benchmarks/startup.py
measures the time; tests/plugins/test_cli_consistency.py keeps the third-party libraries out)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

#: standard-library and plugin modules that cost milliseconds each and that neither command needs:
#: asyncio (~18 ms, was imported by abstractruntime_pluginkit's hostloop through the package's eager re-exports),
#: the schedule book with zoneinfo and cronsim (~4.5 ms, was imported to build ``schedules add``'s choices), the
#: subworkflow starter with the run queries (imported on the first subworkflow)
NOT_AT_START_UP = ("asyncio", "zoneinfo", "cronsim", "abstractruntime_schedules.book",
                   "abstractruntime_schedules.timing", "abstractruntime_subworkflows.start")


def _run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_")}
    env["NO_COLOR"] = "1"
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60,
                          env=env)


def test_help_and_runs_list_import_none_of_the_costly_modules_they_do_not_need():
    out = _run(f"""
        import contextlib, io, sys
        from abstractruntime_cli.main import main
        unwanted = {NOT_AT_START_UP!r}
        with contextlib.redirect_stdout(io.StringIO()) as help_text:
            try:
                main(["--help"])
            except SystemExit as exc:
                assert exc.code == 0, exc.code
        assert "schedules" in help_text.getvalue()
        print("help", sorted(m for m in unwanted if m in sys.modules))
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["--store", "memory://", "runs", "list"]) == 0
        print("runs list", sorted(m for m in unwanted if m in sys.modules))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["help []", "runs list []"], out.stdout


def test_the_lazy_names_still_resolve_and_the_commands_still_offer_their_choices():
    """What the start-up no longer imports is still there on first use: pluginkit's re-exports, the subworkflow
    handler and ``schedules add``'s choices (the schedule book's own constants)."""
    out = _run("""
        import abstractruntime_pluginkit as kit
        import abstractruntime_subworkflows as sw
        from abstractruntime_schedules import book, cli, timing
        import argparse
        assert sorted(kit.__all__) == sorted(n for n in kit.__all__ if getattr(kit, n) is not None)
        assert "on_host_loop" in dir(kit) and kit.on_host_loop(object()) is False
        assert sw.start_subworkflow.__module__ == "abstractruntime_subworkflows.start"
        parser = argparse.ArgumentParser()
        cli._cli_add_args(parser)
        choices = {a.dest: tuple(a.choices) for a in parser._actions if a.choices}
        assert choices == {"overlap": book.OVERLAPS, "catch_up": timing.CATCH_UPS}, choices
        print("ok")
    """)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_import_abstractruntime_imports_neither_cattrs_nor_pathlib_tomllib_urllib_or_hashlib():
    """The kernel builds its cattrs converter on first use and imports pathlib, urllib.parse, tomllib and hashlib
    where they are used: together about a quarter of ``import abstractruntime``; the converter still works."""
    out = _run("""
        import sys
        import abstractruntime
        heavy = ("cattrs", "pathlib", "urllib.parse", "tomllib", "hashlib")
        print(sorted(m for m in heavy if m in sys.modules))
        from abstractruntime import codec
        from abstractruntime.codec import converter
        run = abstractruntime.RunState.new(workflow_id="w", entry_node="a")
        assert codec.run_from_dict(codec.run_to_dict(run)) == run and converter is codec.converter
        print("cattrs" in sys.modules)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
