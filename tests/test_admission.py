"""The bound on work waiting for a database pool, on a test clock."""

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock

from nanomdm_tw.errors import StorageBusy
from nanomdm_tw.storage.admission import Admission, Ticket


class Pool:
    """Stands in for the adbapi pool's threads: work finishes when the test says."""

    def __init__(self) -> None:
        self.tickets: list[Ticket] = []
        self.running: list[Deferred] = []

    def work(self, ticket: Ticket) -> Deferred:
        self.tickets.append(ticket)
        self.running.append(Deferred())
        return self.running[-1]


def outcome(d: Deferred) -> list:
    seen: list = []
    d.addBoth(seen.append)
    return seen


def test_beyond_the_waiting_bound_work_is_refused_at_once() -> None:
    admission, pool = Admission(capacity=2, max_waiting=3, timeout=5, clock=Clock()), Pool()
    admitted = [outcome(admission.admit("idle", pool.work)) for _ in range(5)]
    refused = outcome(admission.admit("idle", pool.work))
    assert len(pool.tickets) == 5 and admission.waiting == 3
    (failure,) = refused
    assert isinstance(failure.value, StorageBusy)
    assert (failure.value.status, failure.value.retry_after) == (503, 5)
    assert str(failure.value) == "database busy: 3 requests already waiting for it; try again later"
    pool.running[0].callback("done")
    assert admitted[0] == ["done"] and admission.in_flight == 4
    assert outcome(admission.admit("idle", pool.work)) == []  # room again


def test_work_not_done_in_time_is_answered_and_skipped_when_its_turn_comes() -> None:
    clock = Clock()
    admission, pool = Admission(capacity=1, max_waiting=10, timeout=30, clock=clock), Pool()
    answer = outcome(admission.admit("checkin", pool.work))
    clock.advance(30)
    (failure,) = answer
    assert isinstance(failure.value, StorageBusy)
    assert failure.value.retry_after == 10
    assert str(failure.value) == "database busy: no answer within 30s; try again later"
    with pytest.raises(StorageBusy):
        admission.begin(pool.tickets[0])  # a pool thread coming to it skips it
    assert admission.in_flight == 1  # still holds its place until its thread is done
    pool.running[0].errback(StorageBusy("skipped", 1))  # a late failure is no news
    assert admission.in_flight == 0


def test_work_done_in_time_is_answered_and_its_timer_cancelled() -> None:
    clock = Clock()
    admission, pool = Admission(capacity=1, max_waiting=1, timeout=1, clock=clock), Pool()
    answer = outcome(admission.admit("checkin", pool.work))
    admission.begin(pool.tickets[0])
    pool.running[0].callback(42)
    assert answer == [42] and clock.getDelayedCalls() == []


def test_a_client_gone_abandons_work_not_begun() -> None:
    admission, pool = Admission(capacity=1, max_waiting=1, timeout=1, clock=Clock()), Pool()
    answer = admission.admit("checkin", pool.work)
    seen = outcome(answer)
    answer.cancel()
    assert seen[0].check(CancelledError)
    with pytest.raises(StorageBusy):
        admission.begin(pool.tickets[0])
