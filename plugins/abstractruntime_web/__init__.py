"""Builtin plugin ``web``: the web console for runs, ledgers and waiting work (docs/console.md).

Two ways to serve it:

* ``abstractruntime [--store URL] serve [--host 127.0.0.1] [--port 8765] [--token T] [--read-only]`` (the
  ``serve`` command this plugin registers; uvicorn);
* :func:`app` ``(runtime, workflows=[...], read_only=False, token=None)``: an ASGI application (Starlette) a host
  mounts in its own app.

Pages: the runs list (``/``: filters, paging, counts per status, what waiting runs wait for) and one run
(``/runs/{run_id}``: state, waiting prompt and answer form, variables, output, error, parent and children, the
flow graph of a VisualFlow run, the ledger timeline, the provenance verification, the snapshots); both refresh by
polling. Actions (answer, pause, resume, cancel)
are CSRF-protected. A JSON API lives under ``/api``. Needs the ``web`` extra (starlette, uvicorn, jinja2), imported
only when the console is built or served.

Hooks: ``abstractruntime_register_cli_commands`` (``serve``).
"""

from __future__ import annotations

from typing import Any, List

from abstractruntime import hookimpl

#: answering reuses ``respond`` (cli) and ``flow resume``'s bundle resolution (bundles, visualflow's drive); the
#: run page lists the run's snapshots through ``runtime.list_snapshots`` when the snapshots plugin is loaded
abstractruntime_requires = ("cli", "bundles", "visualflow")


def app(runtime: Any, workflows: Any = (), read_only: bool = False, token: Any = None) -> Any:
    """The console as an ASGI application (see :func:`abstractruntime_web.console.app`)."""
    from .console import app as build

    return build(runtime, workflows=workflows, read_only=read_only, token=token)


@hookimpl
def abstractruntime_register_cli_commands() -> List[Any]:
    from .serve import serve_command

    return [serve_command()]


__all__ = ["app"]
