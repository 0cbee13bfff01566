"""The bounded map a Lambda container remembers things in."""

from __future__ import annotations

import threading

import pytest

from chalicelib.recent import Recent


def test_it_forgets_the_least_recently_used_beyond_its_limit() -> None:
    recent: Recent[str, int] = Recent(2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # now the most recently used
    recent.put("c", 3)

    assert "b" not in recent
    assert ("a" in recent, "c" in recent, len(recent)) == (True, True, 2)


def test_setdefault_makes_a_value_once_for_threads_asking_at_once() -> None:
    recent: Recent[str, object] = Recent(4)
    made: list[object] = []
    barrier = threading.Barrier(8)
    found: list[object] = []

    def make() -> object:
        made.append(object())
        return made[-1]

    def ask() -> None:
        barrier.wait()
        found.append(recent.setdefault("key", make))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(made) == 1
    assert all(value is made[0] for value in found)


def test_discard_and_a_limit_below_one() -> None:
    recent: Recent[str, int] = Recent(1)
    recent.put("a", 1)
    recent.discard("a")
    recent.discard("never")

    assert len(recent) == 0
    with pytest.raises(ValueError):
        Recent(0)
