"""examples/04_functional_onboarding.py across three processes: ask, answer (the step, then the timer), tick."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "04_functional_onboarding.py"


def run_example(store: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_")}
    env.update(ABSTRACTRUNTIME_STORE=store, ONBOARDING_DELAY_S="0.5")
    proc = subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_the_example_runs_across_processes(tmp_path):
    store = f"lmdb://{tmp_path}/db"
    started = run_example(store, "start", "ada")
    run_id = started.stdout.strip()
    assert "waiting: Which plan for ada?" in started.stderr
    answered = run_example(store, "answer", run_id, "pro")
    assert "waiting: the timer, due " in answered.stdout
    time.sleep(0.6)
    done = run_example(store, "tick", run_id)
    assert done.stdout.startswith("completed: ") and '"plan": "pro", "charged": 4900' in done.stdout
    assert run_example(store, "tick", run_id).stdout == done.stdout  # a replay returns the same output


def test_the_readme_shows_the_first_example_as_a_durable_function(tmp_path, capsys):
    import re

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    code = next(block for block in re.findall(r"```python\n(.*?)```", readme, flags=re.S)
                if "abstractruntime.functional" in block)
    exec(compile(code.replace("lmdb:///tmp/greeter", f"lmdb://{tmp_path}/greeter"), "README.md", "exec"),
         {"__name__": "readme"})
    assert "completed {'greeting': 'Hello, Ada!'}" in capsys.readouterr().out
