"""The LMDB backend remembers the chain head it wrote (``ledger_head_hint``): the provenance plugin chains a commit's
records without reading the ledger first, and a hint another process made stale is forgotten, never forks a chain."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from abstractruntime import Runtime, RunStatus

FLOW = textwrap.dedent('''
    from abstractruntime import Effect, EffectType, StepPlan, WorkflowSpec

    def ask(run, ctx):
        n = run.vars.get("n", 0)
        if n >= 3:
            return StepPlan(node_id="ask", complete_output={"n": n})
        return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "more?"},
                                                    result_key="answer"), next_node="count")

    def count(run, ctx):
        run.vars["n"] = run.vars.get("n", 0) + 1
        return StepPlan(node_id="count", next_node="ask")

    FLOW = WorkflowSpec(workflow_id="asker", entry_node="ask", nodes={"ask": ask, "count": count})
''')


def _flow(tmp_path):
    (tmp_path / "hintflow.py").write_text(FLOW)
    sys.path.insert(0, str(tmp_path))
    try:
        import hintflow
    finally:
        sys.path.remove(str(tmp_path))
    return hintflow.FLOW


def test_commits_chain_on_the_remembered_head_without_reading_the_ledger(tmp_path):
    flow = _flow(tmp_path)
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"})
    reads = []
    original = rt.ledger_store.last_record
    rt.ledger_store.last_record = lambda run_id: reads.append(run_id) or original(run_id)  # count, same answer
    run_id = rt.start(workflow=flow)
    state = rt.tick(workflow=flow, run_id=run_id)
    for _ in range(3):
        state = rt.resume(workflow=flow, run_id=run_id, wait_key=state.waiting.wait_key, payload={"ok": True})
    assert state.status is RunStatus.COMPLETED
    ledger = rt.get_ledger(run_id)
    assert rt.backend.ledger_head_hint(run_id) == (len(ledger), ledger[-1]["record_hash"])
    assert reads == []
    assert rt.verify_ledger(run_id)["ok"] is True
    rt.close()


def test_a_head_another_process_moved_is_forgotten_and_the_chain_stays_whole(tmp_path):
    flow = _flow(tmp_path)
    url = f"lmdb://{tmp_path}/db"
    rt = Runtime.from_config({"store": url})
    run_id = rt.start(workflow=flow)
    state = rt.tick(workflow=flow, run_id=run_id)
    assert rt.backend.ledger_head_hint(run_id) is not None
    other = textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from abstractruntime import Runtime
        from hintflow import FLOW
        rt = Runtime.from_config({{"store": {url!r}}})
        state = rt.get_state({run_id!r})
        state = rt.resume(workflow=FLOW, run_id={run_id!r}, wait_key=state.waiting.wait_key, payload={{"by": "other"}})
        assert state.status.value == "waiting", state.status
        rt.close()
    ''')
    subprocess.run([sys.executable, "-c", other], check=True, timeout=60)
    stale = rt.backend.ledger_head_hint(run_id)
    assert stale is not None and stale[0] < len(rt.get_ledger(run_id))  # this process's hint is behind now
    state = rt.get_state(run_id)
    for _ in range(2):
        state = rt.resume(workflow=flow, run_id=run_id, wait_key=state.waiting.wait_key, payload={"by": "me"})
    assert state.status is RunStatus.COMPLETED and state.output == {"n": 3}
    report = rt.verify_ledger(run_id)
    assert report["ok"] is True, report
    rt.close()


def test_a_refused_commit_forgets_the_hint_so_the_next_one_reads_the_head(tmp_path):
    """A ledger-only commit (no load before it) meets a hint another process made stale: it is refused and
    writes nothing; the next attempt chains on the stored head."""
    flow = _flow(tmp_path)
    url = f"lmdb://{tmp_path}/db"
    rt = Runtime.from_config({"store": url})
    run_id = rt.start(workflow=flow)
    rt.tick(workflow=flow, run_id=run_id)
    other = textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from abstractruntime import Runtime
        from hintflow import FLOW
        rt = Runtime.from_config({{"store": {url!r}}})
        state = rt.get_state({run_id!r})
        rt.resume(workflow=FLOW, run_id={run_id!r}, wait_key=state.waiting.wait_key, payload={{"by": "other"}})
        rt.close()
    ''')
    subprocess.run([sys.executable, "-c", other], check=True, timeout=60)
    before = len(rt.get_ledger(run_id))
    from abstractruntime.errors import ConcurrentModificationError
    from abstractruntime.models import StepRecord, StepStatus

    def note():
        return StepRecord(run_id=run_id, step_id="note", node_id="host", status=StepStatus.COMPLETED,
                          result={"note": True})

    try:
        rt.commit(None, [note()], run_id=run_id)
        refused = False
    except ConcurrentModificationError:
        refused = True
    assert refused and len(rt.get_ledger(run_id)) == before
    rt.commit(None, [note()], run_id=run_id)
    assert len(rt.get_ledger(run_id)) == before + 1
    assert rt.verify_ledger(run_id)["ok"] is True
    rt.close()


def test_the_hint_map_is_bounded_and_a_later_commit_wins():
    from abstractruntime_storekit import HeadHints

    hints = HeadHints(kept=2)
    hints.remember("a", 2, "h2")
    hints.remember("a", 1, "h1")  # an older commit of another thread arriving late
    assert hints.get("a") == (2, "h2")
    hints.remember("b", 1, "x")
    hints.remember("c", 1, "y")
    assert hints.get("a") is None and hints.get("c") == (1, "y")
    hints.seen("c", 1)
    assert hints.get("c") == (1, "y")
    hints.seen("c", 4)
    assert hints.get("c") is None


def test_the_head_check_reads_the_last_hash_off_the_record_json_and_decodes_any_other_layout(tmp_path):
    """Inside the write transaction the provenance precondition asks ``view.last_hash``: LMDB reads it off the end of
    the record's JSON as the kernel writes it (no decoding of a record that may hold a large result), and decodes a
    record whose JSON ends otherwise -- a nested ``record_hash`` at the end of its result, another writer's layout."""
    import orjson

    from abstractruntime.models import StepRecord, StepStatus
    from abstractruntime.storage.base import StepCommit
    from abstractruntime_lmdb.commit import _last_hash, _Reads

    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"})
    try:
        flow = _flow(tmp_path)
        run_id = rt.start(workflow=flow)
        rt.tick(workflow=flow, run_id=run_id)
        backend = rt.backend

        def last_hash():
            return backend.read(lambda txn: _last_hash(backend, _Reads(txn), run_id))

        expected = rt.get_ledger(run_id)[-1]["record_hash"]
        decoded = []
        decode = backend.ledger_store._decode
        backend.ledger_store._decode = lambda *args: decoded.append(args[0]) or decode(*args)
        assert last_hash() == expected is not None
        assert decoded == []  # the kernel's record: read off its end

        def append(text: bytes) -> None:
            record = StepRecord(run_id=run_id, step_id="s", node_id="n", status=StepStatus.COMPLETED)
            backend.commit_step(StepCommit(run=None, run_json=None, records=[record], record_jsons=[text]))

        nested = {"record_hash": "inner", "signature": None}
        append(orjson.dumps({"run_id": run_id, "record_hash": "outer", "result": nested}))
        assert last_hash() == "outer" and decoded == [run_id]  # ends with the nested pair: decoded
        append(b'{"record_hash": "spaced", "run_id": "%s", "signature": null}' % run_id.encode())
        assert last_hash() == "spaced"
        append(orjson.dumps({"run_id": run_id, "record_hash": None, "signature": None}))
        assert last_hash() is None
        append(orjson.dumps({"run_id": run_id, "result": {"x": 'q,"record_hash":"fake","signature":null}'},
                             "record_hash": "real", "signature": "c2ln+/=="}))
        assert last_hash() == "real"
    finally:
        rt.close()
