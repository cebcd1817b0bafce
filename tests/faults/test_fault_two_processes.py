"""Two OS processes tick the same run on one embedded store (LMDB, SQLite): the side effect runs once.

Process A reserves the 'charge' effect (its ``started`` row) and holds inside the provider call; process B then
ticks the same run at the same step, computes the same idempotency key, and its reservation is refused by the
store (``EffectAlreadyStartedError``, a ``ConcurrentModificationError``): B's tick returns without calling the
provider. Without create-only reservations both processes would have called it.
"""

from __future__ import annotations

import subprocess
import textwrap
import sys
import time
from pathlib import Path

import pytest

from abstractruntime import Runtime, RunStatus

SUPPORT = Path(__file__).resolve().parent.parent / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from crash_flow import FLOW, PaymentsPlugin  # noqa: E402

CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from crash_flow import FLOW, PaymentsPlugin
from abstractruntime import Runtime
with Runtime.from_config({"store": sys.argv[2]}, plugins=[PaymentsPlugin(sys.argv[3], hold_until=sys.argv[5])]) as rt:
    print(rt.tick(workflow=FLOW, run_id=sys.argv[4]).status.value, flush=True)
"""


def _tick_in_process(url: str, provider: Path, run_id: str, hold_until: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(SUPPORT), url, str(provider), run_id, hold_until],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("scheme", ["lmdb", "sqlite"])
def test_two_processes_ticking_one_run_charge_once(scheme, tmp_path):
    url = f"lmdb://{tmp_path}/db" if scheme == "lmdb" else f"sqlite://{tmp_path}/runs.sqlite"
    provider = tmp_path / "provider"
    with Runtime.from_config({"store": url}, plugins=[PaymentsPlugin(str(provider))]) as rt:
        run_id = rt.start(workflow=FLOW)
    release = tmp_path / "release"
    first = _tick_in_process(url, provider, run_id, hold_until=str(release))
    attempts = provider / "attempts.log"
    deadline = time.monotonic() + 60
    while not (attempts.exists() and attempts.read_text()):  # A is inside the provider call now
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "process A never reached the provider"
        time.sleep(0.02)
    second = _tick_in_process(url, provider, run_id)  # B ticks while A holds the provider call
    out_b, err_b = second.communicate(timeout=60)
    release.write_text("go")
    out_a, err_a = first.communicate(timeout=60)
    assert second.returncode == 0 and first.returncode == 0, (err_a, err_b)
    assert out_b.strip() == "running", err_b  # B stopped quietly before the effect, the run unchanged for it
    assert out_a.strip() == "completed", err_a
    assert len(attempts.read_text().splitlines()) == 1  # the provider was called once, by A
    with Runtime.from_config({"store": url}, plugins=[PaymentsPlugin(str(provider))]) as rt:
        state = rt.get_state(run_id)
        assert state.status is RunStatus.COMPLETED
        rows = [(r["node_id"], r["status"]) for r in rt.get_ledger(run_id)
                if not str(r.get("idempotency_key") or "").startswith("system:")]
        assert rows == [("charge", "started"), ("charge", "completed"), ("done", "completed")]
        assert rt.verify_ledger(run_id)["ok"] is True


def test_run_locks_exclude_other_threads_and_processes_and_nest(tmp_path):
    import threading

    from abstractruntime_storekit import RunLocks

    locks = RunLocks(tmp_path / "runs.lock")
    assert locks.acquire("r1") and locks.acquire("r1")  # the holder may nest
    other: list = []
    t = threading.Thread(target=lambda: other.append((locks.acquire("r1"), locks.acquire("r2"))))
    t.start()
    t.join()
    assert other == [(False, True)]  # r1 is held by this thread; r2 was free (and is now held by the dead thread)
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); from abstractruntime_storekit import RunLocks; "
             "print(RunLocks(sys.argv[2]).acquire(sys.argv[3]))")
    in_process = lambda run_id: subprocess.run(  # noqa: E731
        [sys.executable, "-c", probe, str(SUPPORT), str(tmp_path / "runs.lock"), run_id],
        capture_output=True, text=True, check=True).stdout.strip()
    assert in_process("r1") == "False" and in_process("r3") == "True"
    locks.release("r1")
    assert in_process("r1") == "False"  # still held once
    locks.release("r1")
    assert in_process("r1") == "True"
    locks.close()


def test_two_run_locks_on_one_file_in_one_process_share_it(tmp_path):
    """Two runtimes of one process on one store: their RunLocks share the file, so closing one does not drop the
    locks the other holds (POSIX drops every lock of a process when any descriptor of the file is closed)."""
    import threading

    from abstractruntime_storekit import RunLocks

    first, second = RunLocks(tmp_path / "runs.lock"), RunLocks(tmp_path / "runs.lock")
    assert first.acquire("r1")
    got: list = []
    t = threading.Thread(target=lambda: got.append(second.acquire("r1")))
    t.start()
    t.join()
    assert got == [False]  # another thread of this process drives r1 through the other runtime
    second.close()
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); from abstractruntime_storekit import RunLocks; "
             "print(RunLocks(sys.argv[2]).acquire('r1'))")
    out = subprocess.run([sys.executable, "-c", probe, str(SUPPORT), str(tmp_path / "runs.lock")],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"  # still held: closing `second` did not release `first`'s lock
    first.release("r1")
    first.close()


def test_run_locks_are_the_same_byte_locks_as_fcntl_lockf(tmp_path):
    """On Linux RunLocks sets its locks through ctypes (keeping the GIL); another process using the standard library's
    ``fcntl.lockf`` on the same byte must see them, and be seen -- whichever way the lock is taken."""
    fcntl = pytest.importorskip("fcntl")
    from abstractruntime_storekit import RunLocks
    from abstractruntime_storekit import locks as locks_module

    path = tmp_path / "runs.lock"
    locks = RunLocks(path)
    offset = RunLocks._offset("r1")
    probe = textwrap.dedent('''
        import fcntl, sys, time
        f = open(sys.argv[1], "ab")
        try:
            fcntl.lockf(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, int(sys.argv[2]))
        except OSError:
            print("refused"); sys.exit(0)
        print("locked", flush=True)
        if sys.argv[3] == "hold":
            sys.stdin.readline()
    ''')
    try:
        assert locks.acquire("r1")
        out = subprocess.run([sys.executable, "-c", probe, str(path), str(offset), "once"], capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == "refused"
        out = subprocess.run([sys.executable, "-c", probe, str(path), str(offset + 1), "once"], capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == "locked"  # exactly that byte: the next one is free
        locks.release("r1")
        out = subprocess.run([sys.executable, "-c", probe, str(path), str(offset), "once"], capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == "locked"
        holder = subprocess.Popen([sys.executable, "-c", probe, str(path), str(offset), "hold"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "locked"
            assert locks.acquire("r1") is False  # the other process's lockf is seen
        finally:
            holder.communicate("\n", timeout=30)
        assert locks.acquire("r1")
        assert locks.acquire("r2")  # one struct flock per lock file, refilled by every call: no state carried over
        locks.release("r1")
        for run_id, expected in (("r1", "locked"), ("r2", "refused")):
            out = subprocess.run([sys.executable, "-c", probe, str(path), str(RunLocks._offset(run_id)), "once"],
                                 capture_output=True, text=True, check=True).stdout.strip()
            assert out == expected, run_id
        locks.release("r2")
        setlk = locks._shared.setlk
    finally:
        locks.close()
    if sys.platform.startswith("linux"):
        assert setlk is not locks_module._setlk_by_lockf  # the GIL-keeping call is the one tested
