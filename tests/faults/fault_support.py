"""Helpers of the fault-injection suite (imported by the tests and by the child processes they start).

:class:`KillAtPoint` is a plugin implementing ``abstractruntime_fault_point``: it SIGKILLs its own process the
``nth`` time it sees ``point`` while the run is executing ``node`` (tracked with ``abstractruntime_before_step``).
Before dying it writes ``marker`` so the test can tell the fault fired (and was not some other crash).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Optional

from abstractruntime import hookimpl

TESTS = Path(__file__).resolve().parents[1]
SUPPORT = str(TESTS / "support")
FAULTS = str(Path(__file__).resolve().parent)


class KillAtPoint:
    __name__ = "kill_at_point"

    def __init__(self, point: str, node: str, marker: str, nth: int = 1) -> None:
        self.point = point
        self.node = node
        self.marker = Path(marker)
        self.nth = nth
        self.current: Optional[str] = None
        self.seen = 0

    @hookimpl
    def abstractruntime_before_step(self, run, node_id):
        self.current = node_id

    # no reset after a step: with durability "barrier" a step's records are committed at the next barrier (the
    # next side effect's reservation, or the end of the tick), while the last node executed is still "current"

    @hookimpl
    def abstractruntime_fault_point(self, point, run_id):
        if point != self.point or self.current != self.node:
            return
        self.seen += 1
        if self.seen == self.nth:
            self.marker.write_text(f"{point} {self.node} {self.nth} {run_id}\n")
            os.kill(os.getpid(), signal.SIGKILL)


CHILD = textwrap.dedent(
    """
    import sys
    sys.path[:0] = [sys.argv[6], sys.argv[7]]
    from abstractruntime import Runtime
    from crash_flow import FLOW, PaymentsPlugin
    from fault_support import KillAtPoint
    url, provider, point, node, nth = sys.argv[1:6]
    rt = Runtime.from_config({"store": url, "durability": sys.argv[8]}, plugins=[PaymentsPlugin(provider),
                                                      KillAtPoint(point, node, provider + "/killed", int(nth))])
    run_id = rt.start(workflow=FLOW)
    print(run_id, flush=True)
    rt.tick(workflow=FLOW, run_id=run_id)
    print("survived", flush=True)
    """
)


def run_child_until_killed(url: str, provider: Path, point: str, node: str, nth: int = 1,
                           durability: str = "barrier") -> str:
    """Start a run in a child process that SIGKILLs itself at the fault point; return the run id."""
    provider.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ABSTRACTRUNTIME_") or k == "ABSTRACTRUNTIME_TEST_POSTGRES_DSN"}
    proc = subprocess.run([sys.executable, "-c", CHILD, url, str(provider), point, node, str(nth), SUPPORT, FAULTS,
                           durability],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    assert (provider / "killed").exists(), "the child died, but not at the fault point"
    return proc.stdout.split()[0]


def lines(path: Path) -> list:
    return path.read_text().split() if path.exists() else []


def digest_tree(root: Path) -> Dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
