"""The query tests of the store conformance suite (a mixin of
:class:`~abstractruntime.testing.store_conformance.StoreConformance`, whose helpers they use)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from ..models import RunStatus, WaitReason, WaitState
from ..storage.base import Capability
from .marks import capability


def _iso(dt: datetime) -> str:
    return dt.isoformat()


class QueryConformance:
    @capability(Capability.RUN_QUERIES)
    def test_list_due_wait_until_compares_instants(self, backend: Any) -> None:
        now = datetime.now(timezone.utc)
        past_z = self.wait_until(backend, (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        # one hour ago written in +05:00: as a string it sorts *after* now, as an instant it is due
        past_offset = self.wait_until(backend, (now - timedelta(hours=1)).astimezone(
            timezone(timedelta(hours=5))).isoformat())
        future_offset = self.wait_until(backend, (now + timedelta(hours=1)).astimezone(
            timezone(timedelta(hours=-5))).isoformat())
        due = backend.run_store.list_due_wait_until(now_iso=now.isoformat())
        assert [r.run_id for r in due] == [past_z.run_id, past_offset.run_id]
        assert future_offset.run_id not in [r.run_id for r in due]
        assert len(backend.run_store.list_due_wait_until(now_iso=now.isoformat(), limit=1)) == 1

    @capability(Capability.RUN_QUERIES)
    def test_due_index_follows_status_changes(self, backend: Any) -> None:
        now = datetime.now(timezone.utc)
        run = self.wait_until(backend, _iso(now - timedelta(minutes=1)))
        assert [r.run_id for r in backend.run_store.list_due_wait_until(now_iso=_iso(now))] == [run.run_id]
        run.status = RunStatus.RUNNING
        run.waiting = None
        self.commit(backend, run, expected=run.revision)
        assert backend.run_store.list_due_wait_until(now_iso=_iso(now)) == []

    @capability(Capability.EVENT_INDEX)
    def test_list_waiting_for_event(self, backend: Any) -> None:
        runs = []
        for key in ("evt:session:s1:go", "evt:session:s1:go", "evt:session:s1:stop"):
            run = self.new_run()
            run.status = RunStatus.WAITING
            run.waiting = WaitState(reason=WaitReason.EVENT, wait_key=key, resume_to_node="b")
            self.commit(backend, run)
            runs.append(run)
        got = backend.run_store.list_waiting_for_event(wait_key="evt:session:s1:go")
        assert sorted(r.run_id for r in got) == sorted([runs[0].run_id, runs[1].run_id])
        assert backend.run_store.list_waiting_for_event(wait_key="evt:session:s1:none") == []
        runs[0].status = RunStatus.COMPLETED
        runs[0].waiting = None
        self.commit(backend, runs[0], expected=runs[0].revision)
        assert [r.run_id for r in backend.run_store.list_waiting_for_event(wait_key="evt:session:s1:go")] == [
            runs[1].run_id]

    @capability(Capability.RUN_QUERIES)
    def test_list_runs_filters_and_orders(self, backend: Any) -> None:
        a = self.new_run(workflow_id="wf-a")
        b = self.new_run(workflow_id="wf-b")
        c = self.wait_until(backend, "2999-01-01T00:00:00+00:00", workflow_id="wf-a")
        for r in (a, b):
            self.commit(backend, r)
        a.vars["touched"] = True
        self.commit(backend, a, expected=a.revision)  # a is now the most recently updated
        ids = [r.run_id for r in backend.run_store.list_runs()]
        assert set(ids) == {a.run_id, b.run_id, c.run_id} and ids[0] == a.run_id
        assert {r.run_id for r in backend.run_store.list_runs(workflow_id="wf-a")} == {a.run_id, c.run_id}
        assert [r.run_id for r in backend.run_store.list_runs(status=RunStatus.WAITING)] == [c.run_id]
        assert [r.run_id for r in backend.run_store.list_runs(wait_reason=WaitReason.UNTIL)] == [c.run_id]
        assert backend.run_store.list_runs(status=RunStatus.RUNNING, workflow_id="wf-b")[0].run_id == b.run_id
        assert len(backend.run_store.list_runs(limit=2)) == 2

    @capability(Capability.RUN_QUERIES)
    def test_list_children_and_run_index(self, backend: Any) -> None:
        parent = self.new_run(session_id="s")
        self.commit(backend, parent)
        kids = [self.new_run(parent_run_id=parent.run_id, workflow_id="child") for _ in range(3)]
        for k in kids:
            self.commit(backend, k)
        kids[0].status = RunStatus.COMPLETED
        self.commit(backend, kids[0], expected=kids[0].revision)
        got = backend.run_store.list_children(parent_run_id=parent.run_id)
        assert sorted(r.run_id for r in got) == sorted(k.run_id for k in kids)
        done = backend.run_store.list_children(parent_run_id=parent.run_id, status=RunStatus.COMPLETED)
        assert [r.run_id for r in done] == [kids[0].run_id]
        rows = backend.run_store.list_run_index(root_only=True)
        assert [r["run_id"] for r in rows] == [parent.run_id]
        assert set(rows[0]) == {"run_id", "workflow_id", "status", "wait_reason", "wait_until", "parent_run_id",
                                "actor_id", "session_id", "created_at", "updated_at"}
        assert len(backend.run_store.list_run_index(workflow_id="child")) == 3
        assert [r["run_id"] for r in backend.run_store.list_run_index(session_id="s")] == [parent.run_id]
