"""The gateway's flow with a fake discovery and a scripted upstream: what is retried, where."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.errors import (
    ConnectLate,
    HostNotAllowed,
    InvalidName,
    LambdaMeshError,
    PayloadTooLarge,
    ServiceNotFound,
    UpstreamAnswerInvalid,
    UpstreamTimeout,
    UpstreamUnreachable,
    VersionNotFound,
)
from chalicelib.gateway import Gateway, ProxyRequest
from chalicelib.instances import Instance, ServiceView
from chalicelib.observability import RouteRecord
from chalicelib.upstream import UpstreamResponse
from lambdamesh_routing.balancing import Strategies
from lambdamesh_routing.errors import ConnectFailed
from lambdamesh_routing.outliers import Outliers
from lambdamesh_routing.policy import (
    DEFAULT_POLICY,
    Alias,
    HashOn,
    MatchRule,
    OutlierDetection,
    Policy,
    Retries,
    Timeouts,
)
from lambdamesh_routing.retries import INITIAL_TOKENS, RetryBudget
from lambdamesh_routing.router import Call, cookie_value, hash_key
from tests.routing.fakes import InOrder
from tests.unit.conftest import NOW

MakeInstance = Callable[..., Instance]
Outcome = UpstreamResponse | LambdaMeshError
OK = UpstreamResponse(200, [("Content-Type", "text/plain")], b"hello")


class FakeDiscovery:
    def __init__(
        self,
        instances: list[Instance],
        error: LambdaMeshError | None = None,
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        self.instances = instances
        self.error = error
        self.asked: list[str] = []
        self.current_policy = policy
        self.outliers = Outliers()
        self.wall_clock = lambda: NOW

    @property
    def ejected(self) -> list[str]:
        return [i.instance_id for i in self.instances if self.outliers.is_ejected(i)]

    def view(self, service: str) -> ServiceView:
        self.asked.append(service)
        if self.error is not None:
            raise self.error
        return ServiceView(tuple(self.instances), self.current_policy)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Sent:
    method: str
    host: str
    port: int
    target: str
    headers: dict[str, str]
    body: bytes | None


class ScriptedUpstream:
    """Answers, or fails, per host: an instance with no script answers OK."""

    def __init__(self, script: Mapping[str, Outcome] | None = None) -> None:
        self.script = dict(script or {})
        self.sent: list[Sent] = []
        self.deadlines: list[float | None] = []
        self.tls_services: list[str | None] = []

    def send(
        self,
        method: str,
        host: str,
        port: int,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None,
        deadline: float | None = None,
        tls_service: str | None = None,
    ) -> UpstreamResponse:
        self.sent.append(Sent(method, host, port, target, dict(headers), body))
        self.deadlines.append(deadline)
        self.tls_services.append(tls_service)
        outcome = self.script.get(host.split(".")[0], OK)
        if isinstance(outcome, LambdaMeshError):
            raise outcome
        return outcome

    @property
    def tried(self) -> list[str]:
        return [sent.host.split(".")[0] for sent in self.sent]


@pytest.fixture
def instances(make_instance: MakeInstance) -> list[Instance]:
    return [make_instance(name, weight=1) for name in ("a", "b", "c")]


def gateway(discovery: FakeDiscovery, upstream: ScriptedUpstream, **limits: Any) -> Gateway:
    """A gateway whose outlier state is the discovery fake's ``outliers``, for the asserting."""
    limits.setdefault("sleep", lambda seconds: None)
    limits.setdefault("outliers", discovery.outliers)
    return Gateway(
        discovery,
        Strategies(InOrder()),
        upstream,
        **limits,
    )


def request(method: str = "GET", **fields: object) -> ProxyRequest:
    values: dict[str, object] = {
        "method": method,
        "service": "orders",
        "version": "v1",
        "path": "items/42",
        "request_id": "req-1",
        "client_ip": "203.0.113.7",
    }
    values.update(fields)
    return ProxyRequest(**values)  # type: ignore[arg-type]


def refused() -> ConnectFailed:
    return ConnectFailed("cannot connect to upstream: Connection refused")


def broken() -> UpstreamUnreachable:
    return UpstreamUnreachable("upstream failed: Connection reset by peer")


# The happy path


def test_a_request_is_forwarded_to_a_routable_instance_and_answered(
    instances: list[Instance],
) -> None:
    discovery, upstream = FakeDiscovery(instances), ScriptedUpstream()

    response = gateway(discovery, upstream).forward(request())

    assert (response.status, response.body) == (200, b"hello")
    assert discovery.asked == ["orders"]
    (sent,) = upstream.sent
    assert (sent.method, sent.host, sent.port) == ("GET", "a.orders.internal", 8080)
    assert sent.target == "/items/42"


def test_an_instance_that_takes_mutual_tls_is_called_over_it_for_its_service(
    make_instance: MakeInstance,
) -> None:
    upstream = ScriptedUpstream()
    instances = [make_instance("a", tls=True)]

    gateway(FakeDiscovery(instances), upstream).forward(request())
    gateway(FakeDiscovery([make_instance("a")]), upstream).forward(request())

    assert upstream.tls_services == ["orders", None]


def test_the_upstream_gets_forwarding_headers_and_the_request_id(
    instances: list[Instance],
) -> None:
    upstream = ScriptedUpstream()

    gateway(FakeDiscovery(instances), upstream).forward(
        request(headers={"Connection": "close", "Host": "api.example.com", "Accept": "*/*"})
    )

    assert upstream.sent[0].headers == {
        "Accept": "*/*",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.example.com",
        "X-Request-Id": "req-1",
    }


def test_the_client_gets_filtered_upstream_headers_and_the_request_id(
    instances: list[Instance],
) -> None:
    answer = UpstreamResponse(
        201,
        [("Transfer-Encoding", "chunked"), ("X-Request-Id", "theirs"), ("Set-Cookie", "a=1")],
        b"",
    )

    response = gateway(FakeDiscovery(instances), ScriptedUpstream({"a": answer})).forward(request())

    assert response.status == 201
    assert response.headers == {"Set-Cookie": "a=1", "X-Request-Id": "req-1"}


def test_an_empty_body_is_sent_as_no_body_and_a_body_as_is(instances: list[Instance]) -> None:
    upstream = ScriptedUpstream()
    subject = gateway(FakeDiscovery(instances), upstream)

    subject.forward(request("GET"))
    subject.forward(request("POST", body=b'{"n": 1}'))

    assert [sent.body for sent in upstream.sent] == [None, b'{"n": 1}']


def test_successive_requests_are_balanced_across_instances(instances: list[Instance]) -> None:
    upstream = ScriptedUpstream()
    subject = gateway(FakeDiscovery(instances), upstream)

    for _ in range(6):
        subject.forward(request())

    assert upstream.tried == ["a", "b", "c", "a", "b", "c"]


# Retries


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH"])
def test_a_refused_connection_is_retried_on_another_instance_for_any_method(
    instances: list[Instance], method: str
) -> None:
    discovery, upstream = FakeDiscovery(instances), ScriptedUpstream({"a": refused()})

    response = gateway(discovery, upstream).forward(request(method, body=b"{}"))

    assert response.status == 200
    assert upstream.tried == ["a", "b"]
    assert discovery.ejected == ["a"]


def forbidden() -> HostNotAllowed:
    return HostNotAllowed("upstream host resolves to no address the gateway may reach")


def test_a_host_that_now_resolves_somewhere_forbidden_is_skipped_and_not_ejected(
    instances: list[Instance],
) -> None:
    discovery, upstream = FakeDiscovery(instances), ScriptedUpstream({"a": forbidden()})

    response = gateway(discovery, upstream).forward(request("POST"))

    assert response.status == 200
    assert upstream.tried == ["a", "b"]
    # The address settings refused it: the deployment's fault, not the instance's.
    assert discovery.ejected == []


def test_when_the_settings_refuse_every_instance_the_answer_is_upstream_not_allowed(
    instances: list[Instance], caplog: pytest.LogCaptureFixture
) -> None:
    discovery = FakeDiscovery(instances)
    upstream = ScriptedUpstream({name: forbidden() for name in ("a", "b", "c")})
    records: list[RouteRecord] = []
    subject = gateway(discovery, upstream, record=records.append)

    for _ in range(3):
        with pytest.raises(LambdaMeshError) as caught:
            subject.forward(request("GET"))
        assert (caught.value.status, caught.value.code) == (502, "upstream_not_allowed")

    assert "a.orders.internal" not in caught.value.message
    assert discovery.ejected == []
    assert [(r.ejections, r.panic) for r in records] == [(0, False)] * 3
    assert "panic mode" not in caplog.text


def test_when_every_instance_refuses_the_answer_is_upstream_unreachable(
    instances: list[Instance],
) -> None:
    discovery = FakeDiscovery(instances)
    upstream = ScriptedUpstream({"a": refused(), "b": refused(), "c": refused()})

    with pytest.raises(UpstreamUnreachable) as caught:
        gateway(discovery, upstream).forward(request("POST"))

    assert (caught.value.status, caught.value.code) == (502, "upstream_unreachable")
    # The caller may be anonymous: it learns the service, never an instance's address.
    assert caught.value.message == "no instance of orders v1 could be reached"
    assert sorted(upstream.tried) == ["a", "b", "c"]
    assert sorted(discovery.ejected) == ["a", "b", "c"]


def test_no_instance_is_tried_twice_for_one_request(make_instance: MakeInstance) -> None:
    pair = [make_instance("a"), make_instance("b")]
    upstream = ScriptedUpstream({"a": refused(), "b": refused()})

    with pytest.raises(UpstreamUnreachable):
        gateway(FakeDiscovery(pair), upstream, max_attempts=5).forward(request())

    assert upstream.tried == ["a", "b"]


@pytest.mark.parametrize("max_attempts", [1, 2, 4])
def test_no_more_than_max_attempts_instances_are_tried(
    make_instance: MakeInstance, max_attempts: int
) -> None:
    many = [make_instance(f"i{n}") for n in range(6)]
    upstream = ScriptedUpstream({f"i{n}": refused() for n in range(6)})

    with pytest.raises(UpstreamUnreachable):
        gateway(FakeDiscovery(many), upstream, max_attempts=max_attempts).forward(request())

    assert len(upstream.sent) == max_attempts


def test_a_timeout_is_not_retried_and_reaches_the_client_as_a_gateway_timeout(
    instances: list[Instance],
) -> None:
    discovery = FakeDiscovery(instances)
    upstream = ScriptedUpstream({"a": UpstreamTimeout("upstream did not answer in time")})

    with pytest.raises(UpstreamTimeout) as caught:
        gateway(discovery, upstream).forward(request("GET"))

    assert caught.value.status == 504
    assert upstream.tried == ["a"]
    assert discovery.ejected == []


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
def test_a_failure_after_sending_is_retried_for_idempotent_methods(
    instances: list[Instance], method: str
) -> None:
    upstream = ScriptedUpstream({"a": broken()})

    response = gateway(FakeDiscovery(instances), upstream).forward(request(method))

    assert response.status == 200
    assert upstream.tried == ["a", "b"]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_failure_after_sending_is_not_retried_for_writes(
    instances: list[Instance], method: str
) -> None:
    upstream = ScriptedUpstream({"a": broken()})

    with pytest.raises(UpstreamUnreachable) as caught:
        gateway(FakeDiscovery(instances), upstream).forward(request(method, body=b"{}"))

    assert caught.value.status == 502
    assert upstream.tried == ["a"]


def test_when_every_read_fails_after_sending_the_reasons_go_to_the_log_only(
    instances: list[Instance], caplog: pytest.LogCaptureFixture
) -> None:
    upstream = ScriptedUpstream({"a": broken(), "b": broken(), "c": broken()})

    with pytest.raises(UpstreamUnreachable) as caught:
        gateway(FakeDiscovery(instances), upstream).forward(request("GET"))

    assert len(upstream.sent) == 3
    assert "reset by peer" not in caught.value.message
    logged = [vars(r) for r in caplog.records if r.getMessage() == "upstream failed"]
    assert [entry["instance_id"] for entry in logged] == ["a", "b", "c"]
    assert all("reset by peer" in entry["reason"] for entry in logged)


# Refused before anything is looked up


def test_a_body_over_the_limit_is_too_large_and_nothing_is_sent(
    instances: list[Instance],
) -> None:
    discovery, upstream = FakeDiscovery(instances), ScriptedUpstream()

    with pytest.raises(PayloadTooLarge, match="10"):
        gateway(discovery, upstream, max_request_body=10).forward(request("POST", body=b"x" * 11))

    assert discovery.asked == []
    assert upstream.sent == []


def test_a_body_of_exactly_the_limit_is_forwarded(instances: list[Instance]) -> None:
    upstream = ScriptedUpstream()

    gateway(FakeDiscovery(instances), upstream, max_request_body=10).forward(
        request("POST", body=b"x" * 10)
    )

    assert upstream.sent[0].body == b"x" * 10


@pytest.mark.parametrize(("service", "version"), [("Orders", "v1"), ("orders", "v 1")])
def test_invalid_names_are_refused_before_discovery(
    instances: list[Instance], service: str, version: str
) -> None:
    discovery = FakeDiscovery(instances)

    with pytest.raises(InvalidName):
        gateway(discovery, ScriptedUpstream()).forward(request(service=service, version=version))

    assert discovery.asked == []


def test_why_there_is_no_instance_reaches_the_caller_unchanged() -> None:
    missing = ServiceNotFound("no service named 'orders' is registered")
    upstream = ScriptedUpstream()

    with pytest.raises(ServiceNotFound) as caught:
        gateway(FakeDiscovery([], error=missing), upstream).forward(request())

    assert caught.value is missing
    assert upstream.sent == []


# ProxyRequest.target


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("items/42", "/items/42"),
        ("/items/42", "/items/42"),
        ("", "/"),
        ("a b/c d", "/a%20b/c%20d"),
        ("what?/x#y", "/what%3F/x%23y"),
        ("100%", "/100%25"),
        ("caf\u00e9", "/caf%C3%A9"),
        ("a:b@c!$&'()*+,;=-._~", "/a:b@c!$&'()*+,;=-._~"),
        ("trailing/", "/trailing/"),
        ("//x", "//x"),
        ("/a//b/", "/a//b/"),
    ],
)
def test_the_target_re_quotes_the_path_the_client_sent(path: str, target: str) -> None:
    assert request(path=path).target == target


def test_the_target_keeps_repeated_query_keys_in_their_order() -> None:
    query = [("b", "2"), ("a", "1"), ("b", "3")]

    assert request(path="search", query=query).target == "/search?b=2&a=1&b=3"


def test_the_target_encodes_query_values() -> None:
    query = [("q", "a b&c=d+e"), ("empty", ""), ("path", "/x/y?z")]

    assert (
        request(path="search", query=query).target
        == "/search?q=a%20b%26c%3Dd%2Be&empty=&path=/x/y?z"
    )


def test_the_query_is_forwarded_upstream(instances: list[Instance]) -> None:
    upstream = ScriptedUpstream()

    gateway(FakeDiscovery(instances), upstream).forward(
        request(path="a b", query=[("x", "1"), ("x", "2")])
    )

    assert upstream.sent[0].target == "/a%20b?x=1&x=2"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_deadline_is_passed_to_each_attempt_and_no_attempt_starts_after_it(
    instances: list[Instance],
) -> None:
    clock = Clock()
    upstream = ScriptedUpstream({"a": refused(), "b": refused(), "c": refused()})
    original = upstream.send

    def slow_send(*args: object, **kwargs: object) -> UpstreamResponse:
        clock.now += 6.0  # each refused attempt costs six seconds
        return original(*args, **kwargs)  # type: ignore[arg-type]

    upstream.send = slow_send  # type: ignore[method-assign]
    gw = Gateway(FakeDiscovery(instances), Strategies(InOrder()), upstream, clock=clock)

    with pytest.raises(UpstreamTimeout):
        gw.forward(request("GET"), budget=10.0)

    assert upstream.deadlines == [110.0, 110.0]


# Version aliases


def test_an_alias_routes_to_the_version_its_rules_pick(make_instance: MakeInstance) -> None:
    pair = [make_instance("old", version="v1"), make_instance("new", version="v2")]
    policy = Policy(
        aliases={"live": Alias(split=(("v1", 1),), match=(MatchRule("x-canary", "1", "v2"),))}
    )
    discovery, upstream = FakeDiscovery(pair, policy=policy), ScriptedUpstream()
    subject = gateway(discovery, upstream)

    subject.forward(request(version="live"))
    subject.forward(request(version="live", headers={"X-Canary": "1"}))

    assert [s.host for s in upstream.sent] == [pair[0].host, pair[1].host]


def test_an_alias_to_a_version_with_no_instance_says_which_alias(
    make_instance: MakeInstance,
) -> None:
    policy = Policy(aliases={"live": Alias(split=(("v9", 1),))})
    discovery = FakeDiscovery([make_instance("a", version="v1")], policy=policy)

    with pytest.raises(VersionNotFound, match=r"no version 'v9' \(alias 'live'\)"):
        gateway(discovery, ScriptedUpstream()).forward(request(version="live"))


# Strategies and their keys


@pytest.mark.parametrize(
    ("hash_on", "headers", "client_ip", "expected"),
    [
        (HashOn(header="x-user"), {"X-User": "ana"}, None, "ana"),
        (HashOn(header="x-user"), {}, None, None),
        (HashOn(cookie="session"), {"Cookie": "a=1; session=s-9; b=2"}, None, "s-9"),
        (HashOn(cookie="session"), {"Cookie": "a=1"}, None, None),
        (HashOn(cookie="session"), {"Cookie": '"unbalanced'}, None, None),
        (HashOn(client_ip=True), {}, "198.51.100.4", "198.51.100.4"),
        (None, {"X-User": "ana"}, None, None),
    ],
)
def test_the_hash_key_comes_from_the_header_cookie_or_address_the_policy_names(
    hash_on: HashOn | None, headers: dict[str, str], client_ip: str | None, expected: str | None
) -> None:
    call = Call("orders", "v1", "GET", headers, client_ip)

    assert hash_key(hash_on, call) == expected


def test_a_consistent_hash_policy_keeps_a_user_on_one_instance(
    make_instance: MakeInstance,
) -> None:
    five = [make_instance(f"i-{n}") for n in range(5)]
    policy = Policy(strategy="consistent_hash", hash_on=HashOn(header="x-user"))
    upstream = ScriptedUpstream()
    subject = gateway(FakeDiscovery(five, policy=policy), upstream)

    for _ in range(50):
        subject.forward(request(headers={"X-User": "ana"}))

    assert len({s.host for s in upstream.sent}) == 1


# Retries on answers, the budget, backoff and timeouts


def answered(status: int) -> UpstreamResponse:
    return UpstreamResponse(status, [("Content-Type", "text/plain")], b"busy")


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_retryable_answer_to_an_idempotent_request_is_tried_on_another_instance(
    instances: list[Instance], status: int
) -> None:
    upstream = ScriptedUpstream({"a": answered(status)})

    response = gateway(FakeDiscovery(instances), upstream).forward(request("GET"))

    assert response.status == 200
    assert upstream.tried == ["a", "b"]


@pytest.mark.parametrize(("method", "status"), [("POST", 503), ("PATCH", 502), ("GET", 500)])
def test_a_post_or_a_500_is_answered_as_the_upstream_gave_it(
    instances: list[Instance], method: str, status: int
) -> None:
    upstream = ScriptedUpstream({"a": answered(status)})

    response = gateway(FakeDiscovery(instances), upstream).forward(request(method))

    assert (response.status, response.body) == (status, b"busy")
    assert upstream.tried == ["a"]


def test_when_every_attempt_answers_503_the_last_answer_goes_back(
    instances: list[Instance],
) -> None:
    upstream = ScriptedUpstream({name: answered(503) for name in "abc"})

    response = gateway(FakeDiscovery(instances), upstream).forward(request("GET"))

    assert response.status == 503
    assert upstream.tried == ["a", "b", "c"]


def test_the_retry_budget_bounds_the_extra_load_on_a_failing_service(
    instances: list[Instance],
) -> None:
    upstream = ScriptedUpstream({name: answered(503) for name in "abc"})
    subject = gateway(FakeDiscovery(instances), upstream)

    for _ in range(1000):
        subject.forward(request("GET"))

    extra = len(upstream.sent) - 1000
    # 20 % of the requests, plus what a quiet service starts with: not 2,000 (3 attempts each).
    assert extra <= 200 + INITIAL_TOKENS
    assert extra >= 195


def test_retries_wait_a_jittered_backoff_that_grows_up_to_its_maximum(
    make_instance: MakeInstance,
) -> None:
    many = [make_instance(f"i{n}") for n in range(5)]
    upstream = ScriptedUpstream({f"i{n}": answered(503) for n in range(5)})
    waits: list[float] = []
    policy = Policy(retries=Retries(max_attempts=5, backoff_base_ms=100, backoff_max_ms=300))
    subject = gateway(FakeDiscovery(many, policy=policy), upstream, sleep=waits.append)

    subject.forward(request("GET"))

    assert len(waits) == 3  # the budget starts with three retries
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(waits, [0.1, 0.2, 0.3], strict=True))


def test_each_try_gets_the_policys_per_try_deadline_within_the_total(
    instances: list[Instance],
) -> None:
    clock = FakeClock(100.0)
    upstream = ScriptedUpstream({"a": answered(503)})
    policy = Policy(timeouts=Timeouts(per_try_seconds=2.0, total_seconds=5.0))
    discovery = FakeDiscovery(instances, policy=policy)
    subject = gateway(discovery, upstream, clock=clock, outliers=Outliers(clock))

    subject.forward(request("GET"), budget=27.0)

    assert upstream.deadlines == [102.0, 102.0]


def test_the_total_timeout_never_exceeds_the_callers_budget(instances: list[Instance]) -> None:
    clock = FakeClock(100.0)
    upstream = ScriptedUpstream()
    policy = Policy(timeouts=Timeouts(total_seconds=20.0))
    discovery = FakeDiscovery(instances, policy=policy)
    subject = gateway(discovery, upstream, clock=clock, outliers=Outliers(clock))

    subject.forward(request("GET"), budget=3.0)

    assert upstream.deadlines == [103.0]


# Outliers and panic through the gateway


def test_with_all_5xx_counted_an_instance_answering_500_is_ejected_after_n_answers(
    instances: list[Instance],
) -> None:
    upstream = ScriptedUpstream({"a": answered(500)})
    all_5xx = Policy(outlier_detection=OutlierDetection(failure_statuses="all_5xx"))
    discovery = FakeDiscovery(instances, policy=all_5xx)
    subject = gateway(discovery, upstream)

    statuses = [subject.forward(request("POST")).status for _ in range(30)]

    assert statuses.count(500) == OutlierDetection().consecutive_failures
    assert discovery.ejected == ["a"]
    assert upstream.tried[-15:].count("a") == 0


def test_by_default_500_answers_eject_no_instance(make_instance: MakeInstance) -> None:
    four = [make_instance(name, weight=1) for name in "abcd"]
    upstream = ScriptedUpstream({name: answered(500) for name in "abcd"})
    discovery = FakeDiscovery(four)
    subject = gateway(discovery, upstream)

    statuses = [subject.forward(request("GET")).status for _ in range(40)]

    assert statuses == [500] * 40
    assert discovery.ejected == []
    assert sorted(set(upstream.tried)) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("status", [502, 503, 504])
def test_by_default_gateway_errors_still_eject_but_only_one_of_four_instances(
    make_instance: MakeInstance, status: int
) -> None:
    four = [make_instance(name, weight=1) for name in "abcd"]
    upstream = ScriptedUpstream({name: answered(status) for name in "abcd"})
    discovery = FakeDiscovery(four)
    subject = gateway(discovery, upstream)

    for _ in range(40):
        subject.forward(request("POST"))

    assert len(discovery.ejected) == 1


def test_answers_whose_headers_may_not_be_relayed_eject_no_instance_and_are_not_retried(
    make_instance: MakeInstance,
) -> None:
    """A client can make an app copy its input into a header: that says nothing of the
    instance's health, so it must not take the instance out for everyone."""
    four = [make_instance(name, weight=1) for name in "abcd"]
    invalid = UpstreamAnswerInvalid("upstream a:1 answered control character 0x01 in header X")
    upstream = ScriptedUpstream({name: invalid for name in "abcd"})
    discovery = FakeDiscovery(four)
    subject = gateway(discovery, upstream, max_attempts=3)

    with pytest.raises(UpstreamAnswerInvalid) as raised:
        subject.forward(request("GET"))
    for _ in range(39):
        with pytest.raises(UpstreamAnswerInvalid):
            subject.forward(request("GET"))

    assert raised.value.status == 502
    assert "orders v1" in raised.value.message and "a:1" not in raised.value.message
    assert len(upstream.sent) == 40
    assert discovery.ejected == []


def test_a_connect_the_deadline_cut_short_ejects_no_instance(
    make_instance: MakeInstance,
) -> None:
    two = [make_instance(name, weight=1) for name in "ab"]
    late = ConnectLate("the request's deadline passed while connecting to a:1")
    discovery = FakeDiscovery(two)
    subject = gateway(discovery, ScriptedUpstream({"a": late, "b": late}))

    with pytest.raises(UpstreamTimeout) as raised:
        subject.forward(request("GET"))

    assert raised.value.status == 504
    assert discovery.ejected == []


def test_with_most_instances_ejected_the_gateway_panics_and_uses_all(
    instances: list[Instance], caplog: pytest.LogCaptureFixture
) -> None:
    discovery = FakeDiscovery(instances)
    for instance in instances[:2]:
        discovery.outliers.eject_for(instance, 60)
    upstream = ScriptedUpstream()
    subject = gateway(discovery, upstream)

    for _ in range(6):
        subject.forward(request("GET"))

    assert sorted(set(upstream.tried)) == ["a", "b", "c"]
    assert "panic mode: routing over every live instance" in caplog.text


# What each routed request records for its metrics


def test_each_routed_request_records_its_version_status_retries_and_latency(
    instances: list[Instance],
) -> None:
    records: list[RouteRecord] = []
    upstream = ScriptedUpstream({"a": refused(), "b": answered(503)})
    subject = gateway(FakeDiscovery(instances), upstream, record=records.append)

    subject.forward(request("GET"))

    [record] = records
    assert (record.upstream, record.version, record.status) == ("orders", "v1", 200)
    assert (record.retries, record.ejections, record.panic) == (2, 1, False)
    assert record.upstream_ms is not None


def test_a_refused_request_records_its_error_status(make_instance: MakeInstance) -> None:
    records: list[RouteRecord] = []
    discovery = FakeDiscovery([])

    with pytest.raises(ServiceNotFound):
        gateway(discovery, ScriptedUpstream(), record=records.append).forward(request())

    assert [(r.status, r.upstream_ms) for r in records] == [(404, None)]


def test_with_no_other_instance_left_no_retry_is_paid_for_or_waited_on(
    make_instance: MakeInstance,
) -> None:
    waits: list[float] = []
    budget = RetryBudget()
    upstream = ScriptedUpstream({"only": answered(503)})
    subject = gateway(
        FakeDiscovery([make_instance("only")]), upstream, sleep=waits.append, retry_budget=budget
    )

    subject.forward(request("GET"))

    assert waits == []
    assert budget.withdraw("orders")  # the three it started with are all still there
    assert budget.withdraw("orders") and budget.withdraw("orders")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("ga=x y; sid=abc", "abc"),
        ('json={"a":1}; sid=abc', "abc"),
        ("sid=abc; ga=x y", "abc"),
        ('sid="quoted"', "quoted"),
        ("other=1", None),
        ("sidx=1; sid=2", "2"),
    ],
)
def test_one_odd_cookie_does_not_hide_the_hash_key(header: str, expected: str | None) -> None:
    assert cookie_value(header, "sid") == expected
