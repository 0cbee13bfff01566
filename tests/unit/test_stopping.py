"""`lambdamesh dev` hears a stop request without any lock the signal handler could need."""

from __future__ import annotations

import signal
import threading

from lambdamesh.stopping import STOP_SIGNALS, StopRequest


def test_a_signal_arriving_inside_the_wait_ends_it() -> None:
    """The handler runs on the waiting thread itself, as Python runs signal handlers: were
    the wait ``Event.wait()``, ``Event.set()`` in the handler could block forever on the lock
    the interrupted wait holds."""
    stop: StopRequest

    def sleep_then_signal(seconds: float) -> None:
        stop(signal.SIGTERM, None)

    stop = StopRequest(sleep=sleep_then_signal)
    finished = threading.Event()

    def wait() -> None:
        stop.wait()
        finished.set()

    worker = threading.Thread(target=wait, daemon=True)
    worker.start()

    assert finished.wait(5), "the wait never returned"


def test_a_second_signal_exits_at_once_with_the_signal_status() -> None:
    codes: list[int] = []
    stop = StopRequest(exit_now=codes.append)

    stop(signal.SIGTERM, None)
    stop(signal.SIGTERM, None)

    assert codes == [128 + signal.SIGTERM]


def test_install_takes_int_term_and_hup() -> None:
    installed: dict[int, object] = {}
    stop = StopRequest()

    stop.install(set_handler=installed.__setitem__)

    assert set(installed) == set(STOP_SIGNALS) == {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    assert all(handler is stop for handler in installed.values())
