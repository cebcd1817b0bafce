"""examples/05_opentelemetry.py runs and prints the two traces docs/observability.md shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "05_opentelemetry.py"


def test_the_example_prints_a_host_trace_and_a_linked_resume_trace():
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    traces = [line.split()[1] for line in lines if line.startswith("trace ")]
    assert len(traces) == 2
    names = [line.split()[0] for line in lines if line and not line.startswith(("trace", "run", "the run"))]
    assert names == ["POST", "abstractruntime.start", "abstractruntime.tick", "abstractruntime.step",
                     "abstractruntime.effect", "abstractruntime.resume", "abstractruntime.step",
                     "abstractruntime.effect", "payments.charge", "abstractruntime.step"]
    resume = next(line for line in lines if line.startswith("abstractruntime.resume"))
    assert resume.endswith(f"link -> trace {traces[0]}")  # the resume's trace links to the run's first trace
    kept = re.search(r"00-([0-9a-f]{32})-", done.stdout).group(1)
    assert kept == traces[0]
