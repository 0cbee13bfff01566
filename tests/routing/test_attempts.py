"""How a failed try ends, by its error: one rule for the gateway and the outbound port."""

from __future__ import annotations

import pytest

from lambdamesh_routing.attempts import TRY_FAILURES, failed, late, unreachable
from lambdamesh_routing.errors import (
    ConnectFailed,
    ConnectLate,
    HostNotAllowed,
    InvalidRequest,
    LambdaMeshError,
    UpstreamAnswerInvalid,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from lambdamesh_routing.instances import Instance, ServiceView
from lambdamesh_routing.policy import from_json
from lambdamesh_routing.router import Call, Plan, Router
from tests.routing.conftest import NOW, MakeInstance

# One failure ejects, and every instance may be ejected: what a try counts shows at once.
EAGER = from_json({"outlier_detection": {"consecutive_failures": 1, "max_ejected_percent": 100}})


def planned(make_instance: MakeInstance, method: str = "GET") -> tuple[Router, Plan, Instance]:
    instances = tuple(make_instance(name) for name in ("a", "b"))
    router = Router(clock=lambda: 0.0, wall_clock=lambda: NOW, sleep=lambda _: None)
    plan = router.plan(Call("orders", "v1", method, {}), ServiceView(instances, EAGER), 10.0)
    return router, plan, next(plan)


def test_an_address_the_settings_refuse_names_the_proxy_and_counts_nothing(
    make_instance: MakeInstance,
) -> None:
    router, plan, instance = planned(make_instance)

    outcome = failed(plan, instance, HostNotAllowed("10.0.0.5 is private"), "the outbound port")

    assert outcome.error.code == "upstream_not_allowed"
    assert "the outbound port" in outcome.error.message
    assert (outcome.ejected_seconds, plan.retryable) == (0.0, True)
    assert not router.outliers.is_ejected(instance)


def test_a_failed_connect_ejects_the_instance_and_lets_another_be_tried_for_any_method(
    make_instance: MakeInstance,
) -> None:
    router, plan, instance = planned(make_instance, "POST")

    outcome = failed(plan, instance, ConnectFailed("cannot connect to a:8080"), "the gateway")

    assert outcome.error.message == "no instance of orders v1 could be reached"
    assert plan.retryable and router.outliers.is_ejected(instance)


@pytest.mark.parametrize(("method", "retryable"), [("GET", True), ("POST", False)])
def test_a_broken_connection_counts_against_the_instance_and_is_retried_if_safe(
    make_instance: MakeInstance, method: str, retryable: bool
) -> None:
    _, plan, instance = planned(make_instance, method)

    outcome = failed(plan, instance, UpstreamUnreachable("reset by a:8080"), "the gateway")

    assert (outcome.error.code, outcome.error.message) == (
        "upstream_unreachable",
        "no instance of orders v1 could be reached",
    )
    assert outcome.ejected_seconds > 0
    assert plan.retryable is retryable


def test_no_answer_in_time_counts_against_the_instance_and_is_not_retried(
    make_instance: MakeInstance,
) -> None:
    _, plan, instance = planned(make_instance)

    outcome = failed(plan, instance, UpstreamTimeout("a:8080 is slow"), "the gateway")

    assert (outcome.error.status, outcome.error.message) == (
        504,
        "orders v1 did not answer in time",
    )
    assert outcome.ejected_seconds > 0
    assert not plan.retryable


@pytest.mark.parametrize(
    "error",
    [
        ConnectLate("the deadline passed while connecting to a:8080"),
        UpstreamResponseTooLarge("a:8080 answered 9 MB"),
        UpstreamAnswerInvalid("a:8080 answered a control character"),
    ],
)
def test_what_ends_the_request_says_nothing_of_the_instance(
    make_instance: MakeInstance, error: LambdaMeshError
) -> None:
    router, plan, instance = planned(make_instance)

    outcome = failed(plan, instance, error, "the gateway")

    assert (outcome.error.status, outcome.error.code) == (error.status, error.code)
    assert (outcome.ejected_seconds, plan.retryable) == (0.0, False)
    assert not router.outliers.is_ejected(instance)


def test_a_late_connect_is_answered_as_a_timeout(make_instance: MakeInstance) -> None:
    _, plan, instance = planned(make_instance)

    outcome = failed(plan, instance, ConnectLate("late to a:8080"), "the gateway")

    assert outcome.error.message == late(plan.call).message == "orders v1 did not answer in time"


def test_an_error_no_try_ends_with_propagates(make_instance: MakeInstance) -> None:
    _, plan, instance = planned(make_instance)
    error = InvalidRequest("not the upstream's doing")

    assert not isinstance(error, TRY_FAILURES)
    with pytest.raises(InvalidRequest):
        failed(plan, instance, error, "the gateway")


def test_the_unreachable_answer_names_the_service_and_version_as_asked() -> None:
    call = Call("orders", "stable", "GET", {})

    assert unreachable(call).message == "no instance of orders stable could be reached"
