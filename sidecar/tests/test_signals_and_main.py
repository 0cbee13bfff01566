"""Signal handling and the entry point, in-process."""

from __future__ import annotations

import signal
import threading

import pytest

from lambdamesh_sidecar.__main__ import main
from lambdamesh_sidecar.signals import StopOnSignal, run_off_main_thread
from lambdamesh_sidecar.variables import VARIABLES


def test_first_signal_asks_to_stop_once_delivered_outside_the_handler() -> None:
    stop = threading.Event()
    exits: list[int] = []
    handler = StopOnSignal(stop, exit_now=exits.append)

    handler(signal.SIGTERM, None)
    assert not stop.is_set()  # the handler takes no lock: Event.set() is not called in it
    handler.deliver()

    assert stop.is_set()
    assert exits == []


def test_the_handler_takes_no_lock_so_a_signal_inside_a_locked_section_cannot_deadlock() -> None:
    """The stop event's own lock held, as when a handler interrupts Event.set(): the
    handler must still return (and a second signal still exit)."""
    stop = threading.Event()
    exits: list[int] = []
    handler = StopOnSignal(stop, exit_now=exits.append)
    done = threading.Event()

    def signalled_while_locked() -> None:
        with stop._cond:  # type: ignore[attr-defined]  # what Event.set() holds
            handler(signal.SIGTERM, None)
            handler(signal.SIGTERM, None)
        done.set()

    worker = threading.Thread(target=signalled_while_locked, daemon=True)
    worker.start()

    assert done.wait(5), "the handler blocked on a lock"
    assert exits == [128 + signal.SIGTERM]


def test_a_signal_before_the_runner_starts_stops_it_before_it_runs() -> None:
    stop = threading.Event()
    handler = StopOnSignal(stop, exit_now=lambda code: None)
    handler(signal.SIGTERM, None)  # say, while ECS's metadata was being read
    seen: list[bool] = []

    def run() -> int:
        seen.append(stop.is_set())
        return 0

    assert run_off_main_thread(run, handler) == 0
    assert seen == [True]


def test_a_signal_while_the_runner_runs_reaches_it_within_the_delivery_interval() -> None:
    stop = threading.Event()
    handler = StopOnSignal(stop, exit_now=lambda code: None)

    def run() -> int:
        handler(signal.SIGTERM, None)  # as if the kernel delivered it now
        return 0 if stop.wait(5) else 3

    assert run_off_main_thread(run, handler) == 0


def test_second_signal_exits_at_once() -> None:
    stop = threading.Event()
    exits: list[int] = []
    handler = StopOnSignal(stop, exit_now=exits.append)

    handler(signal.SIGTERM, None)
    handler(signal.SIGINT, None)

    assert exits == [128 + signal.SIGINT]


def test_install_covers_sigterm_and_sigint() -> None:
    installed: dict[int, object] = {}
    handler = StopOnSignal(threading.Event())

    handler.install(set_handler=installed.__setitem__)

    assert installed == {signal.SIGTERM: handler, signal.SIGINT: handler}


def test_help_describes_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["-h"], environ={})

    assert exited.value.code == 0
    usage = capsys.readouterr().out
    assert all(name in usage for name, _ in VARIABLES)


def test_config_error_returns_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], environ={}) == 2

    assert capsys.readouterr().err == "lambdamesh-sidecar: LAMBDAMESH_URL is required\n"


def test_an_outbound_port_allowed_private_addresses_but_no_networks_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    environ = {
        "LAMBDAMESH_URL": "https://mesh.example.com",
        "LAMBDAMESH_TOKEN": "t0ken",
        "LAMBDAMESH_SERVICE": "orders",
        "LAMBDAMESH_VERSION": "v1",
        "LAMBDAMESH_PORT": "8080",
        "LAMBDAMESH_HOST": "10.0.1.5",
        "LAMBDAMESH_OUTBOUND_PORT": "15001",
        "LAMBDAMESH_OUTBOUND_ALLOW_PRIVATE": "true",
    }

    assert main([], environ=environ) == 2

    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("lambdamesh-sidecar: LAMBDAMESH_OUTBOUND_ALLOW_PRIVATE is true but ")
    assert "LAMBDAMESH_OUTBOUND_ALLOWED_NETWORKS names no network" in line


def test_unknown_argument_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--frobnicate"], environ={})

    assert exited.value.code == 2


def test_runner_runs_off_the_main_thread_and_its_code_is_returned() -> None:
    threads: list[threading.Thread] = []

    def run() -> int:
        threads.append(threading.current_thread())
        return 7

    assert run_off_main_thread(run) == 7
    assert threads[0] is not threading.main_thread()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_crashed_runner_exits_1() -> None:
    def run() -> int:
        raise RuntimeError("bug")

    assert run_off_main_thread(run) == 1


def test_build_hands_the_task_arn_and_the_readiness_interval_to_the_runner() -> None:
    from lambdamesh_sidecar.__main__ import build
    from lambdamesh_sidecar.config import Settings

    arn = "arn:aws:ecs:us-east-1:123456789012:task/prod/0123456789abcdef0123456789abcdef"
    settings = Settings(
        registry_url="http://127.0.0.1:9",
        token="t",
        service="orders",
        version="v1",
        host="127.0.0.1",
        port=8080,
        instance_id="i-1",
        task_arn=arn,
        readiness_seconds=2.5,
    )

    runner = build(settings, threading.Event())

    assert runner._registration.task_arn == arn
    assert runner._timing.status_check_seconds == 2.5
