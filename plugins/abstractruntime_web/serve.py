"""``abstractruntime serve``: the console on uvicorn.

Binding to an address other than loopback needs ``--token`` (or ``ABSTRACTRUNTIME_CONSOLE_TOKEN``): without one
the command refuses to start (exit 2), since anyone who can reach the port could answer and cancel runs.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any

from abstractruntime.errors import ConfigurationError

TOKEN_ENV = "ABSTRACTRUNTIME_CONSOLE_TOKEN"


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def _port(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, got {value}")
    return value


def _serve_args(parser: Any) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8765, help="port (default 8765)")
    parser.add_argument("--token", help=f"require this token on every request (default: ${TOKEN_ENV}); needed "
                                        f"for a non-loopback --host")
    parser.add_argument("--read-only", action="store_true", help="pages without actions; writes refused")


def check_bind(host: str, token: Any) -> None:
    if not is_loopback(host) and not token:
        raise ConfigurationError(f"refusing to serve on {host} without a token: anyone who reaches it could answer "
                                 f"and cancel runs. Pass --token TOKEN (or set {TOKEN_ENV}), or bind 127.0.0.1")


def _serve(args: Any, runtime: Any) -> int:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    check_bind(args.host, token)
    try:
        import uvicorn
    except ImportError:
        raise ConfigurationError("the web console needs its extra: pip install 'abstractruntime[web]'") from None
    from .console import app

    asgi = app(runtime, read_only=args.read_only, token=token)
    if getattr(args, "json", False):  # one JSON line on stdout for a supervisor (docs/cli.md)
        import json

        print(json.dumps({"event": "serving", "url": f"http://{args.host}:{args.port}/",
                          "read_only": bool(args.read_only), "token_required": bool(token)}), flush=True)
    print(f"AbstractRuntime console on http://{args.host}:{args.port}/" + (" (read-only)" if args.read_only else "")
          + (" -- open it once as /?token=TOKEN" if token else ""), file=sys.stderr, flush=True)
    uvicorn.run(asgi, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def serve_command() -> Any:
    from abstractruntime.descriptors import CliCommandDescriptor

    return CliCommandDescriptor("serve", "serve the web console (runs, ledgers, waiting work) over HTTP",
                                _serve_args, _serve)


__all__ = ["serve_command", "check_bind", "is_loopback"]
