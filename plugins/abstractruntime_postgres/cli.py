"""``abstractruntime worker --store postgresql://... --concurrency N --workflows module:attr``.

A worker process drives runs claimed from the PostgreSQL store (leases, heartbeats, fencing) until it is stopped
(SIGTERM/SIGINT: the steps in flight finish, claimed runs are released). Workflow code comes from import paths:
``module:NAME`` naming a WorkflowSpec, a list/tuple of them, or a WorkflowRegistry.
"""

from __future__ import annotations

import importlib
import json
import signal
import threading
from typing import Any, List

import attrs

from abstractruntime.errors import ConfigurationError
from abstractruntime.storage.base import Capability
from abstractruntime.models import WorkflowSpec
from abstractruntime_pluginkit import WorkflowRegistry
from abstractruntime_pluginkit.cliargs import positive_int, positive_seconds


def load_workflows(paths: List[str]) -> WorkflowRegistry:
    registry = WorkflowRegistry()
    for path in paths:
        module_name, _, attr = path.partition(":")
        if not module_name or not attr:
            raise ConfigurationError(f"--workflows {path!r}: expected 'module:NAME'")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"--workflows {path!r}: {exc}") from None
        if isinstance(obj, WorkflowRegistry):
            specs = [obj.get(i) for i in obj.list_ids()]
        elif isinstance(obj, (list, tuple)):
            specs = list(obj)
        else:
            specs = [obj]
        for spec in specs:
            if not isinstance(spec, WorkflowSpec):
                raise ConfigurationError(f"--workflows {path!r}: {spec!r} is not a WorkflowSpec")
            if spec.workflow_id not in registry:
                registry.register(spec)
    return registry


def configure(parser: Any) -> None:
    parser.add_argument("--concurrency", type=positive_int, default=4, help="worker threads (default 4)")
    parser.add_argument("--workflows", action="append", required=True, metavar="MODULE:NAME",
                        help="workflow specs to drive (repeatable)")
    parser.add_argument("--lease", type=positive_seconds, default=30.0, help="lease seconds (default 30)")
    parser.add_argument("--poll-interval", type=positive_seconds, default=1.0)


def run(args: Any, runtime: Any) -> int:
    from .worker import PostgresWorker

    if not runtime.backend.supports(Capability.LEASES):
        raise ConfigurationError("abstractruntime worker needs the postgres store (--store postgresql://...)")
    registry = load_workflows(args.workflows)
    if runtime.workflow_registry is None:
        runtime.set_workflow_registry(registry)
    worker = PostgresWorker(runtime, registry, lease_s=args.lease, poll_interval_s=args.poll_interval,
                            threads=args.concurrency)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    if args.json:  # one JSON line when it starts, one with its counters when it stops (docs/cli.md)
        print(json.dumps({"event": "started", "worker_id": worker.worker_id, "concurrency": args.concurrency}),
              flush=True)
    else:
        print(f"worker {worker.worker_id} running with {args.concurrency} thread(s); SIGTERM to stop", flush=True)
    stop.wait()
    worker.stop()
    if args.json:
        print(json.dumps({"event": "stopped", "worker_id": worker.worker_id, **attrs.asdict(worker.stats)}),
              flush=True)
    return 0
