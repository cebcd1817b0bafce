"""create_scheduled_runtime takes the runtime's configuration: the README's scheduler example keeps its runs in
the store it names (they survive a killed process); without any store or configuration it keeps the 0.4.2
in-memory default and says so once."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from abstractruntime import RunStatus, Runtime, create_scheduled_runtime
from abstractruntime_inmemory.store import MemoryBackend
from abstractruntime_lmdb.store import LmdbBackend

ROOT = Path(__file__).resolve().parents[2]
_README = (ROOT / "README.md").read_text(encoding="utf-8")
_BLOCKS = re.findall(r"^```python\n(.*?)^```", _README, re.M | re.S)
# the README's first workflow (up to its definition) and its scheduler example, as written
FLOW = next(b for b in _BLOCKS if "flow = WorkflowSpec(" in b).split("runtime = Runtime.from_config")[0]
EXAMPLE = next(b for b in _BLOCKS if "create_scheduled_runtime(" in b)
CREATE = [line for line in EXAMPLE.splitlines() if "create_scheduled_runtime(" in line or line.startswith("from ")]
START = next(line for line in EXAMPLE.splitlines() if "sr.start(" in line)
RESPOND = next(line for line in EXAMPLE.splitlines() if "sr.respond(" in line)
CLOSE = next(line for line in EXAMPLE.splitlines() if line.startswith("sr.close()") or line.startswith("sr.stop()"))


def _script(*lines: str) -> str:
    return FLOW + "\n" + "\n".join(lines) + "\n"


def test_the_readme_example_keeps_its_runs_across_a_killed_process(tmp_path):
    first = _script(*CREATE, START, textwrap.dedent("""
        import time
        while sr.get_state(run_id).status.value != "waiting":
            time.sleep(0.05)
        print(run_id, flush=True)
        time.sleep(600)  # killed here, with the scheduler running
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("ABSTRACTRUNTIME_STORE", None)
    proc = subprocess.Popen([sys.executable, "-c", first], cwd=tmp_path, stdout=subprocess.PIPE, text=True, env=env)
    try:
        run_id = proc.stdout.readline().strip()
        assert run_id, "the first process did not start the run"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert (tmp_path / "runs").is_dir()  # the store the example names, relative to its working directory

    second = _script(*CREATE, f"run_id = {run_id!r}", RESPOND, textwrap.dedent("""
        import time
        for _ in range(200):
            state = sr.get_state(run_id)
            if state.status.value == "completed":
                break
            time.sleep(0.05)
        print(state.status.value, state.output, flush=True)
    """), CLOSE)
    out = subprocess.run([sys.executable, "-c", second], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "completed {'greeting': 'Hello, Ada!'}"


def _flow():
    namespace: dict = {}
    exec(FLOW, namespace)
    return namespace["flow"]


def test_configuration_reaches_the_scheduled_runtime(tmp_path, monkeypatch):
    flow = _flow()
    with create_scheduled_runtime(workflows=[flow], settings={"store": f"lmdb://{tmp_path}/a"}, auto_start=False) \
            as sr:
        assert isinstance(sr.runtime.backend, LmdbBackend)
        run_id = sr.start(workflow=flow)
    monkeypatch.setenv("ABSTRACTRUNTIME_STORE", f"lmdb://{tmp_path}/a")
    with create_scheduled_runtime(workflows=[flow], auto_start=False) as again:  # the environment names the store
        assert again.get_state(run_id).status is RunStatus.RUNNING
    toml = tmp_path / "app.toml"
    toml.write_text(f'[abstractruntime]\nstore = "sqlite://{tmp_path}/b.db"\n'
                    f'[abstractruntime.plugin_options.scheduler]\nworkers = 3\npoll_interval_s = 0.25\n')
    monkeypatch.delenv("ABSTRACTRUNTIME_STORE")
    with create_scheduled_runtime(workflows=[flow], settings=str(toml), auto_start=False) as from_file:
        assert type(from_file.runtime.backend).__name__ == "SqliteDatabase"
        assert (from_file.scheduler.workers, from_file.scheduler.poll_interval_s) == (3, 0.25)  # plugin options
    with create_scheduled_runtime(workflows=[flow], settings=str(toml), workers=1, poll_interval_s=2.0,
                                  auto_start=False) as explicit:
        assert (explicit.scheduler.workers, explicit.scheduler.poll_interval_s) == (1, 2.0)  # arguments win


def test_without_store_or_configuration_it_is_in_memory_and_warns_once(monkeypatch, caplog):
    monkeypatch.delenv("ABSTRACTRUNTIME_STORE", raising=False)
    monkeypatch.delenv("ABSTRACTRUNTIME_CONFIG", raising=False)
    with caplog.at_level(logging.WARNING, logger="abstractruntime.scheduler"):
        sr = create_scheduled_runtime(workflows=[_flow()], auto_start=False)
    warnings = [r for r in caplog.records if "scheduler_store_in_memory" in r.getMessage()]
    assert len(warnings) == 1 and "store='lmdb:///path/to/runs'" in warnings[0].getMessage()
    assert isinstance(sr.runtime.backend, MemoryBackend)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="abstractruntime.scheduler"):
        create_scheduled_runtime(workflows=[_flow()], store="memory://", auto_start=False)
    assert not [r for r in caplog.records if "scheduler_store_in_memory" in r.getMessage()]  # asked for memory


def test_stores_passed_in_stay_the_callers(tmp_path):
    backend = MemoryBackend()
    sr = create_scheduled_runtime(run_store=backend.run_store, ledger_store=backend.ledger_store,
                                  workflows=[_flow()], store=f"lmdb://{tmp_path}/unused", auto_start=False)
    assert sr.runtime.backend is backend and not (tmp_path / "unused").exists()
    sr.close()
    assert Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store).backend is backend
