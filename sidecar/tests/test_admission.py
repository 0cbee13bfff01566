"""Flow control on the way in: requests with the app, bounded, the rest queued, then refused."""

from __future__ import annotations

import threading

import pytest

from lambdamesh_sidecar.admission import Admission
from lambdamesh_sidecar.serving import Overloaded


def hold(
    admission: Admission, release: threading.Event, entered: threading.Semaphore
) -> threading.Thread:
    """A request that takes a turn and keeps it until ``release``."""

    def run() -> None:
        with admission.turn():
            entered.release()
            release.wait(5)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_burst_beyond_the_concurrency_and_the_queue_is_refused_at_once() -> None:
    admission = Admission(max_concurrency=2, max_queue=1, queue_seconds=5)
    release, entered = threading.Event(), threading.Semaphore(0)
    holders = [hold(admission, release, entered) for _ in range(2)]
    assert entered.acquire(timeout=5) and entered.acquire(timeout=5)
    waiter = hold(admission, release, entered)  # queued
    while admission.queued != 1:
        threading.Event().wait(0.001)
    with pytest.raises(Overloaded) as refused, admission.turn():
        pass
    assert (refused.value.status, refused.value.code, refused.value.retry_after) == (
        503,
        "sidecar_overloaded",
        1,
    )
    assert "2 requests in hand and 1 waiting" in refused.value.message
    release.set()
    for thread in [*holders, waiter]:
        thread.join(5)
    assert entered.acquire(timeout=5)  # the queued one had its turn
    assert (admission.active, admission.queued) == (0, 0)


def test_a_queued_request_gives_up_after_the_queue_time_and_leaves_no_trace() -> None:
    admission = Admission(max_concurrency=1, max_queue=5, queue_seconds=0.05)
    release, entered = threading.Event(), threading.Semaphore(0)
    holder = hold(admission, release, entered)
    assert entered.acquire(timeout=5)
    with pytest.raises(Overloaded, match=r"within 0\.05 s"), admission.turn():
        pass
    assert (admission.active, admission.queued) == (1, 0)
    release.set()
    holder.join(5)
    assert (admission.active, admission.queued) == (0, 0)
    with admission.turn():
        assert admission.active == 1


def test_turns_pass_in_arrival_order() -> None:
    admission = Admission(max_concurrency=1, max_queue=10, queue_seconds=5)
    release, entered = threading.Event(), threading.Semaphore(0)
    holder = hold(admission, release, entered)
    assert entered.acquire(timeout=5)
    order: list[int] = []
    go = [threading.Event() for _ in range(3)]

    def wait_turn(n: int) -> None:
        with admission.turn():
            order.append(n)

    waiters = []
    for n in range(3):
        waiters.append(threading.Thread(target=wait_turn, args=(n,)))
        waiters[-1].start()
        while admission.queued != n + 1:
            go[n].wait(0.001)
    release.set()
    for thread in [holder, *waiters]:
        thread.join(5)
    assert order == [0, 1, 2]


def test_a_failing_request_gives_its_turn_back() -> None:
    admission = Admission(max_concurrency=1, max_queue=0, queue_seconds=1)
    with pytest.raises(RuntimeError), admission.turn():
        raise RuntimeError("the app broke")
    with admission.turn():
        assert admission.active == 1
