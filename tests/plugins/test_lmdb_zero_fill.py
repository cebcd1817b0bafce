"""The LMDB store's zero-filled room (abstractruntime_lmdb/growth.py): while commits are fsync'd, ``data.mdb`` is
kept written with zeros a few MiB past LMDB's last page, so a commit's new pages overwrite blocks the file has
(its ``fdatasync`` need not make a new file size durable too). Real stores in temporary directories; the failure
case uses a real file size limit (``RLIMIT_FSIZE``) in a child process."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from abstractruntime import Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.errors import ConfigurationError
from abstractruntime_lmdb.check import iter_corrupt
from abstractruntime_lmdb.growth import DEFAULT_ZERO_FILL, MIN_ROOM


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={"n": len(run.vars.get("pad", ""))})


FLOW = WorkflowSpec(workflow_id="zero_fill", entry_node="done", nodes={"done": _done})


def _runs(rt: Runtime, count: int, pad: int = 200) -> list:
    ids = []
    for _ in range(count):
        run_id = rt.start(workflow=FLOW, vars={"pad": "x" * pad})
        assert rt.tick(workflow=FLOW, run_id=run_id).status is RunStatus.COMPLETED
        ids.append(run_id)
    return ids


def _used(rt: Runtime) -> int:
    """Bytes of data.mdb LMDB uses: up to the end of its last page."""
    env = rt.backend.env
    return (env.info()["last_pgno"] + 1) * env.stat()["psize"]


def _tail(path: Path, start: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(start)
        return fh.read()


def test_a_synced_store_keeps_zeros_past_its_data_and_commits_inside_them_leave_the_file_size_alone(tmp_path):
    data = tmp_path / "db" / "data.mdb"
    with Runtime.from_config({"store": f"lmdb://{tmp_path / 'db'}"}) as rt:
        _runs(rt, 3)
        used, size = _used(rt), data.stat().st_size
        assert size - used >= MIN_ROOM * 3 // 4, (size, used)  # a small store: the smallest room
        assert not any(_tail(data, used)), "the room past LMDB's last page is not all zeros"

        _runs(rt, 4)  # a few KiB of new pages: inside the room
        assert _used(rt) > used, "the data did not grow (the test would show nothing)"
        assert data.stat().st_size == size, "a commit inside the room grew the file"
        assert not any(_tail(data, _used(rt)))


def test_the_room_is_a_quarter_of_the_data_up_to_zero_fill(tmp_path):
    """A small store stays small; a large one gets up to ``zero_fill`` bytes of room (4 MiB by default)."""
    data = tmp_path / "db" / "data.mdb"
    with Runtime.from_config({"store": f"lmdb://{tmp_path / 'db'}"}) as rt:
        _runs(rt, 1)
        assert data.stat().st_size - _used(rt) <= MIN_ROOM + MIN_ROOM // 4
        rooms = []
        for _ in range(12):
            _runs(rt, 10, pad=200_000)  # 2 MB of data each time
            used, size = _used(rt), data.stat().st_size
            rooms.append(size - used)
            assert size - used <= max(MIN_ROOM, min(DEFAULT_ZERO_FILL, used // 4)) * 5 // 4, (size, used)
        assert max(rooms) > DEFAULT_ZERO_FILL // 2, rooms


def test_the_room_is_refilled_when_it_runs_low_and_every_run_stays_readable(tmp_path):
    room = 128 * 1024
    data = tmp_path / "db" / "data.mdb"
    with Runtime.from_config({"store": f"lmdb://{tmp_path / 'db'}?zero_fill={room}"}) as rt:
        ids, sizes = [], set()
        for _ in range(30):
            ids += _runs(rt, 2, pad=3000)
            size, used = data.stat().st_size, _used(rt)
            sizes.add(size)
            # some room always (refilled before a quarter is gone; a commit here grows the data by ~25 KiB at most);
            # never more than one room past a low one
            assert used < size < used + room + room // 4 + 64 * 1024, (size, used)
        assert len(sizes) >= 3, f"the room was not refilled as the data grew (file sizes seen: {sorted(sizes)})"
        for run_id in ids:
            assert rt.get_state(run_id).output == {"n": 3000}
        assert list(iter_corrupt(rt.backend)) == []


@pytest.mark.parametrize("options", ["?zero_fill=0", "?sync=false"], ids=["zero_fill=0", "sync=false"])
def test_no_room_is_written_when_it_is_off_or_commits_are_not_synced(tmp_path, options):
    data = tmp_path / "db" / "data.mdb"
    with Runtime.from_config({"store": f"lmdb://{tmp_path / 'db'}{options}"}) as rt:
        _runs(rt, 20)
        assert data.stat().st_size == _used(rt)


def test_a_negative_zero_fill_is_refused_naming_the_option(tmp_path):
    with pytest.raises(ConfigurationError,
                       match="lmdb store options: .zero_fill. must be 0 .off. or a number of bytes, got -1"):
        Runtime.from_config({"store": f"lmdb://{tmp_path / 'db'}?zero_fill=-1"})


CHILD = textwrap.dedent(
    """
    import json, os, resource, sys
    from abstractruntime import Runtime
    sys.path.insert(0, sys.argv[2])
    from test_lmdb_zero_fill import FLOW, _runs
    path = sys.argv[1]
    rt = Runtime.from_config({"store": f"lmdb://{path}"})   # creates the store: a few pages, no room yet
    # the file may grow by 160 KiB: its first room (256 KiB) cannot be written -- a short write, then EFBIG --
    # while the data of the runs below fits
    limit = os.path.getsize(os.path.join(path, "data.mdb")) + 160 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    ids = _runs(rt, 6)
    rt.close()
    print(json.dumps({"ids": ids, "limit": limit}))
    """
)


def test_a_room_that_cannot_be_written_fails_no_commit(tmp_path):
    path = tmp_path / "db"
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert "lmdb_zero_fill_stopped" in out.stdout + out.stderr, "the room was given up without a warning"
    assert (path / "data.mdb").stat().st_size <= got["limit"]
    with Runtime.from_config({"store": f"lmdb://{path}"}) as rt:
        for run_id in got["ids"]:
            assert rt.get_state(run_id).output == {"n": 200}
        assert list(iter_corrupt(rt.backend)) == []


GROW = textwrap.dedent(
    """
    import sys
    from abstractruntime import Runtime
    sys.path.insert(0, sys.argv[2])
    from test_lmdb_zero_fill import FLOW, _runs
    with Runtime.from_config({"store": f"lmdb://{sys.argv[1]}?zero_fill=65536"}) as rt:
        print(" ".join(_runs(rt, 12, pad=3000)))
    """
)


def test_processes_sharing_a_store_keep_one_room_past_its_data_and_lose_nothing(tmp_path):
    """A process fills only past the file's end as it finds it (in a write transaction: no other process writes
    pages meanwhile), so the room another process filled is neither filled again nor written over data."""
    path, room = tmp_path / "db", 65536
    data, ids = path / "data.mdb", []
    with Runtime.from_config({"store": f"lmdb://{path}?zero_fill={room}"}) as rt:
        for _ in range(3):
            ids += _runs(rt, 12, pad=3000)
            out = subprocess.run([sys.executable, "-c", GROW, str(path), str(Path(__file__).parent)],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr[-3000:]
            ids += out.stdout.split()
            size, used = data.stat().st_size, _used(rt)
            assert used < size < used + room + room // 4 + 64 * 1024, (size, used)
        assert not any(_tail(data, _used(rt)))
        assert len(ids) == 72
        for run_id in ids:
            assert rt.get_state(run_id).output == {"n": 3000}
