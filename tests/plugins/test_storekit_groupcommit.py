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


def test_an_interrupted_waiter_leaves_the_queue_and_its_commit_is_not_written():
    import signal

    batches = []
    started, finish = threading.Event(), threading.Event()

    def apply(batch):
        batches.append([e.commit for e in batch])
        if len(batches) == 1:
            started.set()
            assert finish.wait(10)

    group = GroupCommit(apply)
    leader = threading.Thread(target=group.submit, args=("first",))
    leader.start()
    assert started.wait(10)
    later = threading.Thread(target=group.submit, args=("later",))

    def interrupt_when_queued():
        while len(group._queue) < 1:
            threading.Event().wait(0.001)
        later.start()
        while len(group._queue) < 2:
            threading.Event().wait(0.001)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    helper = threading.Thread(target=interrupt_when_queued)
    helper.start()
    with pytest.raises(KeyboardInterrupt):
        group.submit("interrupted")  # the main thread waits behind "first" until the signal comes
    helper.join(10)
    assert [e.commit for e in group._queue] == ["later"]
    finish.set()
    for t in (leader, later):
        t.join(10)
        assert not t.is_alive()
    assert batches == [["first"], ["later"]]  # never written, and "later" was not left waiting
    assert group._writing is False and group._queue == []


def test_a_lead_handed_to_a_waiter_that_was_interrupted_goes_to_the_next_in_line():
    from abstractruntime_storekit.groupcommit import GroupEntry

    group = GroupCommit(lambda batch: None)
    first, second = GroupEntry("a"), GroupEntry("b")
    for entry in (first, second):
        entry._wake = threading.Lock()
        entry._wake.acquire()
    group._queue, group._writing = [first, second], True
    first._lead = True
    first._wake.release()  # the lead was handed to "a" ... whose caller was interrupted before it took it
    group._abandon(first)
    assert group._queue == [second] and second._lead and group._writing
    assert second._wake.acquire(blocking=False)  # "b" was woken to lead the next batch
    group._abandon(second)  # and if it is interrupted too, nothing is being written any more
    assert group._queue == [] and group._writing is False


def _waiters(group, commits):
    """Entries of a written batch whose callers wait (their wake locks held), chained as the leader chains them."""
    from abstractruntime_storekit.groupcommit import GroupEntry

    entries = []
    for commit in commits:
        entry = GroupEntry(commit)
        entry._wake = threading.Lock()
        entry._wake.acquire()
        entries.append(entry)
    for entry, after in zip(entries, entries[1:]):
        entry._next = after
    for entry in entries:
        entry.done = True
    return entries


def test_the_waiters_of_a_batch_wake_one_another_in_turn(monkeypatch):
    """Sixteen callers queued behind a batch being written: the first leads the next batch, and once it is written
    the others are woken in turn -- the leader wakes one, each the next once it runs (not all at once: they would
    all want the GIL at once)."""
    from abstractruntime_storekit import groupcommit

    monkeypatch.setattr(groupcommit, "STALL_SECONDS", 10.0)  # a loaded machine must not make one go on by itself
    release = threading.Event()
    woken = []

    def apply(batch):
        if not release.is_set():
            assert release.wait(10)

    group = GroupCommit(apply)
    original = GroupCommit._wake_next

    def recording(entry):
        woken.append(entry.commit)
        original(entry)

    group._wake_next = recording  # (an instance attribute: the class's static method is untouched)
    leader = threading.Thread(target=group.submit, args=(-1,))
    leader.start()
    while not group._writing:
        threading.Event().wait(0.001)
    threads = [threading.Thread(target=group.submit, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    while len(group._queue) < 16:
        threading.Event().wait(0.001)
    order = [e.commit for e in group._queue]
    release.set()
    for t in [leader, *threads]:
        t.join(10)
        assert not t.is_alive()
    assert woken == order[1:]  # the first leads the next batch; each other one was woken by the one before it
    assert group._writing is False and group._queue == []


def test_a_waiter_interrupted_after_its_batch_was_written_still_wakes_the_next():
    group = GroupCommit(lambda batch: None)
    first, second, third = _waiters(group, "abc")
    group._abandon(first)  # interrupted before it passed the wake-up on
    assert second._wake.acquire(blocking=False)  # "b" was woken
    assert not third._wake.acquire(blocking=False)  # "c" is b's to wake


def test_a_waiter_not_woken_by_the_one_before_it_looks_for_itself():
    """The one before was interrupted between its wake-up and waking this one: this one goes on after
    STALL_SECONDS (its batch is written) and wakes the next."""
    import time

    from abstractruntime_storekit.groupcommit import STALL_SECONDS

    group = GroupCommit(lambda batch: None)
    _first, second, third = _waiters(group, "abc")
    t0 = time.monotonic()
    group._wait(second)  # nobody releases b's lock
    assert STALL_SECONDS <= time.monotonic() - t0 < 10 * STALL_SECONDS + 1
    group._wake_next(second)
    assert third._wake.acquire(blocking=False)
    group._wake_next(second)  # passed on once: a second call releases nothing (no RuntimeError)
