"""Unit tests of the runner's loop: fake registry, fake clock, fake stop signal; no waiting."""

from __future__ import annotations

import itertools
import logging

import pytest
from sidecar_testkit import FakeClock, FakeRegistry, FakeStop, MaxRng

from lambdamesh_sidecar.backoff import Backoff
from lambdamesh_sidecar.client import NotRegistered, Registration, Rejected, Unavailable
from lambdamesh_sidecar.runner import Runner, Timing

REGISTRATION = Registration(version="v1", host="10.0.1.5", port=8080, lease_seconds=30)
TIMING = Timing(heartbeat_seconds=10.0, lease_seconds=30.0, request_timeout=5.0)


class Ready:
    """Readiness answers from a script; the last answer repeats."""

    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers) or [True]
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class Harness:
    def __init__(self, ready: Ready | None = None, timing: Timing = TIMING) -> None:
        self.clock = FakeClock()
        self.slept: list[float] = []
        self.registry = FakeRegistry(self.clock)
        self.stop = FakeStop(self.clock)
        self.ready = ready or Ready(True)
        self.runner = Runner(
            self.registry,
            REGISTRATION,
            self.ready,
            self.stop,
            timing=timing,
            backoff=Backoff(base=0.5, cap=30.0),
            rejected_backoff=Backoff(base=2.0, cap=60.0),
            rng=MaxRng(),
            clock=self.clock,
            sleep=self.sleep,
        )

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.now += seconds

    def stop_after(self, name: str, count: int) -> None:
        self.stop.stop_when = lambda: self.registry.count(name) >= count

    def run(self) -> int:
        return self.runner.run()


def test_registers_heartbeats_and_deregisters_on_stop() -> None:
    harness = Harness()
    harness.stop_after("heartbeat", 3)

    assert harness.run() == 0

    assert harness.registry.names() == [
        "register",
        "heartbeat",
        "heartbeat",
        "heartbeat",
        "deregister",
    ]
    registered = harness.registry.of("register")[0].argument
    assert registered == REGISTRATION
    assert [call.argument for call in harness.registry.of("heartbeat")] == ["UP"] * 3


def test_heartbeats_are_spaced_by_the_interval_with_jitter() -> None:
    harness = Harness()
    harness.stop_after("heartbeat", 3)

    harness.run()

    times = [call.at for call in harness.registry.calls[:4]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps == pytest.approx([11.0, 11.0, 11.0]), "MaxRng draws the +10% end of the jitter"


def test_waits_for_the_app_before_registering() -> None:
    harness = Harness(Ready(False, False, True))
    harness.stop_after("register", 1)

    harness.run()

    assert harness.stop.waits[:2] == [1.0, 1.0]
    assert harness.registry.of("register")[0].at == 1002.0


def test_stop_while_waiting_for_the_app_exits_without_touching_the_registry() -> None:
    harness = Harness(Ready(False))
    harness.stop.stop_when = lambda: len(harness.stop.waits) >= 3

    assert harness.run() == 0

    assert harness.registry.calls == []


def test_waiting_for_the_app_is_logged_now_and_then(caplog: pytest.LogCaptureFixture) -> None:
    harness = Harness(Ready(False))
    harness.stop.stop_when = lambda: len(harness.stop.waits) >= 65

    with caplog.at_level(logging.INFO, "lambdamesh_sidecar"):
        harness.run()

    waiting = [r for r in caplog.records if r.getMessage().startswith("waiting for the app")]
    assert 2 <= len(waiting) <= 4


def test_registers_again_at_once_when_the_registry_forgets_the_instance(
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness = Harness()
    harness.registry.heartbeat_outcomes.extend([None, NotRegistered("gone", status=404)])
    harness.stop_after("heartbeat", 3)

    with caplog.at_level(logging.INFO, "lambdamesh_sidecar"):
        harness.run()

    assert harness.registry.names() == [
        "register",
        "heartbeat",
        "heartbeat",
        "register",
        "heartbeat",
        "deregister",
    ]
    forgotten, again = harness.registry.calls[2], harness.registry.calls[3]
    assert again.at == forgotten.at, "no wait between the 404 and registering again"
    assert any(r.getMessage().startswith("re-registered") for r in caplog.records)


def test_backs_off_with_full_jitter_while_the_registry_is_unavailable() -> None:
    harness = Harness()
    harness.registry.register_outcomes.extend([Unavailable("503", status=503)] * 4)
    harness.stop_after("heartbeat", 1)

    harness.run()

    assert harness.registry.names()[:6] == ["register"] * 5 + ["heartbeat"]
    assert harness.stop.waits[:4] == [0.5, 1.0, 2.0, 4.0]


def test_backoff_is_capped() -> None:
    harness = Harness()
    harness.registry.register_outcomes.extend([Unavailable("down")] * 10)
    harness.stop_after("register", 11)

    harness.run()

    assert max(wait or 0 for wait in harness.stop.waits) == 30.0


def test_outage_is_logged_when_it_starts_and_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    harness = Harness()
    harness.registry.register_outcomes.extend([Unavailable("connection refused")] * 5)
    harness.stop_after("register", 6)

    with caplog.at_level(logging.INFO, "lambdamesh_sidecar"):
        harness.run()

    messages = [r.getMessage() for r in caplog.records]
    unreachable = [m for m in messages if m.startswith("registry unreachable")]
    assert len(unreachable) == 1
    assert 'message="connection refused"' in unreachable[0]
    assert any(m.startswith("registry reachable again failed_attempts=5") for m in messages)


def test_rejection_is_logged_as_an_error_and_retried_slowly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness = Harness()
    refusal = Rejected("token is not valid", status=401, code="unauthorized")
    harness.registry.register_outcomes.extend([refusal] * 8)
    harness.stop_after("register", 9)

    with caplog.at_level(logging.INFO, "lambdamesh_sidecar"):
        harness.run()

    assert harness.stop.waits[:8] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 8
    assert "code=unauthorized" in errors[0].getMessage()
    assert 'message="token is not valid"' in errors[0].getMessage()


def test_heartbeat_retry_is_pulled_in_to_stay_inside_the_lease() -> None:
    harness = Harness(
        timing=Timing(heartbeat_seconds=10.0, lease_seconds=30.0, request_timeout=5.0)
    )
    harness.registry.heartbeat_outcomes.extend([Unavailable("down")] * 6)
    harness.stop_after("heartbeat", 7)

    harness.run()

    renewed_at = harness.registry.of("register")[0].at
    retries = [call.at for call in harness.registry.of("heartbeat")]
    last_useful = renewed_at + 30.0 - 5.0
    assert any(retry == pytest.approx(last_useful) for retry in retries), (
        "one retry lands just before the lease would lapse"
    )


def test_failed_heartbeats_keep_the_process_running_until_stopped() -> None:
    harness = Harness()
    harness.registry.heartbeat_outcomes.extend([Unavailable("down")] * 50)
    harness.stop_after("heartbeat", 50)

    assert harness.run() == 0

    assert harness.registry.names()[-1] == "deregister"


def test_reports_down_while_the_app_fails_readiness_and_up_again_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Ready before registering, then checked every 5 s: ready at +5, failing at +10 and +15,
    # ready again at +20. Heartbeats are due every 11 s (10 s plus the jitter's maximum).
    harness = Harness(Ready(True, True, False, False, True))
    harness.stop_after("heartbeat", 3)

    with caplog.at_level(logging.INFO, "lambdamesh_sidecar"):
        harness.run()

    registered = harness.registry.of("register")[0].at
    beats = harness.registry.of("heartbeat")
    assert [call.argument for call in beats] == ["DOWN", "UP", "UP"]
    # Each change goes out at the check that saw it, not at the next heartbeat's time.
    assert [call.at - registered for call in beats] == pytest.approx([10.0, 20.0, 31.0])
    levels = {r.getMessage(): r.levelno for r in caplog.records}
    assert levels["app failed its readiness check; reporting DOWN"] == logging.WARNING
    assert levels["app is ready again; reporting UP"] == logging.INFO


def test_a_status_change_that_fails_to_send_waits_for_its_backoff() -> None:
    """A DOWN that cannot be sent is retried on the backoff, not at every readiness check."""
    harness = Harness(Ready(True, False))
    harness.registry.heartbeat_outcomes.extend([Unavailable("down")] * 3)
    harness.stop_after("heartbeat", 4)

    harness.run()

    registered = harness.registry.of("register")[0].at
    times = [call.at - registered for call in harness.registry.of("heartbeat")]
    assert times[0] == pytest.approx(5.0)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= 0.5 for gap in gaps)
    assert [call.argument for call in harness.registry.of("heartbeat")] == ["DOWN"] * 4


def test_a_flapping_app_does_not_cut_the_backoff_short_while_the_registry_is_down() -> None:
    """Every readiness check sees a change, and each may not mean a request: a registry in
    trouble gets the backoff, however many apps flap (often for the same cause)."""
    harness = Harness(Ready(*[True, False] * 50))
    harness.registry.heartbeat_outcomes.extend([Unavailable("down")] * 20)
    harness.stop_after("heartbeat", 9)

    harness.run()

    times = [call.at for call in harness.registry.of("heartbeat")]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # The backoff's ceilings (0.5 s doubling, 30 s at most), the sixth pulled in to the last
    # useful moment of the lease; past the lease, the full backoff, not a readiness check's 5 s.
    assert gaps == pytest.approx([0.5, 1.0, 2.0, 4.0, 8.0, 4.5, 30.0, 30.0])


def test_registers_again_with_the_current_status() -> None:
    harness = Harness(Ready(True, False))
    harness.registry.heartbeat_outcomes.append(NotRegistered("gone", status=404))
    harness.stop_after("register", 2)

    harness.run()

    assert harness.registry.of("register")[1].argument.status == "DOWN"


def test_deregisters_with_a_short_timeout() -> None:
    harness = Harness(timing=Timing(request_timeout=5.0, shutdown_budget=5.0))
    harness.stop_after("register", 1)

    harness.run()

    assert harness.registry.of("deregister")[0].argument == 2.5


def test_deregister_is_tried_twice_then_given_up(caplog: pytest.LogCaptureFixture) -> None:
    harness = Harness()
    harness.registry.deregister_outcomes.extend([Unavailable("down")] * 3)
    harness.stop_after("heartbeat", 1)

    with caplog.at_level(logging.INFO, "lambdamesh_sidecar"):
        assert harness.run() == 0

    assert harness.registry.count("deregister") == 2
    assert caplog.records[-1].levelno == logging.ERROR
    assert "lease lapses" in caplog.records[-1].getMessage()


def test_deregister_retry_succeeds_after_one_failure() -> None:
    harness = Harness()
    harness.registry.deregister_outcomes.append(Unavailable("reset"))
    harness.stop_after("heartbeat", 1)

    harness.run()

    assert harness.registry.count("deregister") == 2


def test_stop_during_registration_retries_still_deregisters() -> None:
    harness = Harness()
    harness.registry.register_outcomes.extend([Unavailable("timed out")] * 5)
    harness.stop_after("register", 2)

    assert harness.run() == 0

    assert harness.registry.names() == ["register", "register", "deregister"]


def test_stop_after_only_refused_registrations_deregisters_nothing() -> None:
    # A 4xx answer means nothing was stored: a DELETE would only be refused in turn.
    harness = Harness()
    refusal = Rejected("wrong service", status=403, code="forbidden")
    harness.registry.register_outcomes.extend([refusal] * 5)
    harness.stop_after("register", 2)

    assert harness.run() == 0

    assert harness.registry.names() == ["register", "register"]


def test_stop_during_reregistration_ends_the_loop() -> None:
    harness = Harness()
    harness.registry.heartbeat_outcomes.append(NotRegistered("gone"))
    harness.registry.register_outcomes.extend([None] + [Unavailable("down")] * 5)
    harness.stop_after("register", 3)

    assert harness.run() == 0

    assert harness.registry.names() == [
        "register",
        "heartbeat",
        "register",
        "register",
        "deregister",
    ]


# Draining on stop


DRAINING = Timing(heartbeat_seconds=10.0, lease_seconds=30.0, request_timeout=5.0, drain_seconds=7)


def test_on_stop_it_reports_draining_waits_then_deregisters() -> None:
    harness = Harness(timing=DRAINING)
    harness.stop_after("heartbeat", 2)

    assert harness.run() == 0

    assert harness.registry.names()[-2:] == ["heartbeat", "deregister"]
    assert [call.argument for call in harness.registry.of("heartbeat")] == ["UP", "UP", "DRAINING"]
    [draining, deregistered] = harness.registry.calls[-2:]
    assert harness.slept == [7]
    assert deregistered.at - draining.at == 7


def test_a_failed_draining_report_still_drains_before_deregistering(
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness = Harness(timing=DRAINING)
    harness.stop_after("heartbeat", 1)
    harness.registry.heartbeat_outcomes.extend([None, Unavailable("down", status=503)])

    harness.run()

    assert harness.slept == [7]
    assert harness.registry.names()[-1] == "deregister"
    assert "could not report DRAINING" in caplog.text


def test_with_no_drain_time_it_deregisters_at_once() -> None:
    harness = Harness()
    harness.stop_after("heartbeat", 1)

    harness.run()

    assert harness.slept == []
    assert [call.argument for call in harness.registry.of("heartbeat")] == ["UP"]


def test_a_sidecar_stopped_before_registering_does_not_drain() -> None:
    harness = Harness(ready=Ready(False), timing=DRAINING)
    harness.stop.stop_when = lambda: True

    harness.run()

    assert harness.slept == []
    assert harness.registry.calls == []
