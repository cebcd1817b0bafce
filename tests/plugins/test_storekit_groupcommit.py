"""storekit's GroupCommit on its own: batches, hand-off of the leader, per-commit errors, with real threads."""

from __future__ import annotations

import threading

import pytest

from abstractruntime_storekit import GroupCommit


class Refused(Exception):
    pass


def test_waiting_commits_go_in_one_batch_and_each_caller_gets_its_own_outcome():
    batches = []
    first_started, release_first = threading.Event(), threading.Event()

    def apply(batch):
        if not batches:  # hold the first batch until everyone else has queued behind it
            first_started.set()
            assert release_first.wait(10)
        for entry in batch:
            if entry.commit % 5 == 4:
                entry.error = Refused(entry.commit)
        batches.append([e.commit for e in batch])

    group = GroupCommit(apply)
    outcomes = {}
    returned_after = {}

    def submit(n):
        try:
            group.submit(n)
            outcomes[n] = "ok"
        except Refused as exc:
            outcomes[n] = f"refused {exc.args[0]}"
        returned_after[n] = len(batches)  # how many batches were written when this caller returned

    leader = threading.Thread(target=submit, args=(0,))
    leader.start()
    assert first_started.wait(10)
    others = [threading.Thread(target=submit, args=(n,)) for n in range(1, 16)]
    for t in others:
        t.start()
    while len(group._queue) < 15:  # all 15 queued behind the batch being written
        threading.Event().wait(0.001)
    release_first.set()
    for t in [leader, *others]:
        t.join(10)
        assert not t.is_alive()

    assert batches[0] == [0]
    assert sorted(batches[1]) == list(range(1, 16))  # the next leader took everything queued
    assert len(batches) == 2 and group.transactions == 2 and group.commits == 16
    assert outcomes == {n: (f"refused {n}" if n % 5 == 4 else "ok") for n in range(16)}
    assert all(returned_after[n] >= 2 for n in range(1, 16))  # nobody returned before its batch was written
    assert group._writing is False and group._queue == []


def test_a_failing_batch_fails_its_callers_and_the_next_one_still_writes():
    calls = []

    def apply(batch):
        calls.append([e.commit for e in batch])
        if batch[0].commit == "boom":
            raise RuntimeError("disk on fire")

    group = GroupCommit(apply)
    with pytest.raises(RuntimeError, match="disk on fire"):
        group.submit("boom")
    group.submit("fine")
    assert calls == [["boom"], ["fine"]]
    assert group.transactions == 2 and group._writing is False
