"""Lambda's Invoke API in front of the local app: who may invoke, how payloads and failures
are answered, and that every other request still reaches the HTTP lanes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdamesh.events import HttpRequest
from lambdamesh.invocations import MAX_PAYLOAD_BYTES, Invocations, invoke_url
from lambdamesh.invokers import Answer, LambdaContext

PATH = "/2015-03-31/functions/lambdamesh/invocations"
EVENT = {"source": "aws.ecs", "detail-type": "ECS Task State Change", "detail": {}}


class Function:
    """A function that records its calls and answers what it is told to."""

    def __init__(self, answer: Any = None, fails: Exception | None = None) -> None:
        self.calls: list[tuple[Any, Any]] = []
        self.answer = {"outcome": "ignored"} if answer is None else answer
        self.fails = fails

    def __call__(self, event: Any, context: Any) -> Any:
        self.calls.append((event, context))
        if self.fails is not None:
            raise self.fails
        return self.answer


class Http:
    def __init__(self) -> None:
        self.requests: list[HttpRequest] = []

    def __call__(self, request: HttpRequest) -> Answer:
        self.requests.append(request)
        return Answer(200, [("Content-Type", "text/plain")], b"from the gateway")


def post(
    body: bytes | str = json.dumps(EVENT),
    path: str = PATH,
    method: str = "POST",
    source_ip: str = "127.0.0.1",
    headers: tuple[tuple[str, str], ...] = (),
) -> HttpRequest:
    payload = body.encode() if isinstance(body, str) else body
    return HttpRequest(method, path, headers, payload, source_ip=source_ip)


def answer_json(answer: Answer) -> Any:
    return json.loads(answer.body)


@pytest.fixture
def function() -> Function:
    return Function()


@pytest.fixture
def http() -> Http:
    return Http()


@pytest.fixture
def invocations(function: Function, http: Http) -> Invocations:
    return Invocations(function, http, timeout_seconds=30.0)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/orders/v1/x",
        "/registry/services",
        "/2015-03-31/functions/lambdamesh",
        "/2015-03-31/functions/lambdamesh/invocations/extra",
        "/2015-03-31/functions//invocations",
        "/2015-03-31/functions/a%2Fb/invocations",
        "/prefix/2015-03-31/functions/lambdamesh/invocations",
    ],
)
def test_every_other_path_goes_to_the_http_lane_untouched(
    invocations: Invocations, function: Function, http: Http, path: str
) -> None:
    request = post(path=path)

    answer = invocations(request)

    assert answer.body == b"from the gateway"
    assert http.requests == [request]
    assert function.calls == []


def test_an_invocation_calls_the_function_with_the_event_and_answers_its_result(
    invocations: Invocations, function: Function, http: Http
) -> None:
    answer = invocations(post())

    assert answer.status == 200
    assert answer.header("Content-Type") == "application/json"
    assert answer_json(answer) == {"outcome": "ignored"}
    [(event, context)] = function.calls
    assert event == EVENT
    assert isinstance(context, LambdaContext)
    assert context.function_name == "lambdamesh"
    assert 0 < context.get_remaining_time_in_millis() <= 30_000
    assert http.requests == []


@pytest.mark.parametrize(
    "name", ["lambdamesh", "arn:aws:lambda:us-east-1:123456789012:function:lambdamesh"]
)
def test_the_function_may_be_named_as_lambda_allows(invocations: Invocations, name: str) -> None:
    assert invocations(post(path=f"/2015-03-31/functions/{name}/invocations")).status == 200


def test_an_empty_payload_is_an_empty_event(invocations: Invocations, function: Function) -> None:
    assert invocations(post(b"")).status == 200
    assert function.calls[0][0] == {}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
def test_only_post_invokes(invocations: Invocations, function: Function, method: str) -> None:
    answer = invocations(post(method=method))

    assert answer.status == 405
    assert answer_json(answer)["__type"] == "InvalidRequestContentException"
    assert function.calls == []


@pytest.mark.parametrize(
    "source_ip", ["10.0.0.5", "192.168.1.2", "::ffff:10.0.0.5", "2001:db8::1", ""]
)
def test_only_loopback_clients_may_invoke(
    invocations: Invocations, function: Function, source_ip: str
) -> None:
    answer = invocations(post(source_ip=source_ip))

    assert answer.status == 403
    assert answer_json(answer)["__type"] == "AccessDeniedException"
    assert "loopback" in answer_json(answer)["message"]
    assert function.calls == []


@pytest.mark.parametrize("source_ip", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
def test_every_loopback_address_may_invoke(
    invocations: Invocations, function: Function, source_ip: str
) -> None:
    assert invocations(post(source_ip=source_ip)).status == 200
    assert len(function.calls) == 1


@pytest.mark.parametrize(
    "headers",
    [
        # A web page's fetch(url, {method: "POST", mode: "no-cors", body}): no preflight.
        (
            ("Content-Type", "text/plain;charset=UTF-8"),
            ("Origin", "http://page.example"),
            ("Sec-Fetch-Site", "cross-site"),
        ),
        # The same page after a DNS rebinding: same-origin, and still marked.
        (("Origin", "http://rebound.example:8000"), ("Sec-Fetch-Site", "same-origin")),
        (("origin", "null"),),
        (("sec-fetch-site", "same-site"),),
    ],
)
def test_a_browser_on_this_machine_may_not_invoke(
    invocations: Invocations, function: Function, headers: tuple[tuple[str, str], ...]
) -> None:
    answer = invocations(post(headers=headers))

    assert answer.status == 403
    assert answer_json(answer)["__type"] == "AccessDeniedException"
    assert "browser" in answer_json(answer)["message"]
    assert function.calls == []


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b'{"a": 1} trailing'])
def test_a_payload_that_is_not_json_answers_400(
    invocations: Invocations, function: Function, body: bytes
) -> None:
    answer = invocations(post(body))

    assert answer.status == 400
    assert answer_json(answer)["message"] == "the payload is not JSON"
    assert function.calls == []


def test_a_payload_over_lambdas_limit_answers_413_and_one_at_it_is_read(
    invocations: Invocations, function: Function
) -> None:
    at_limit = json.dumps({"pad": "x" * (MAX_PAYLOAD_BYTES - 11)}).encode()
    assert len(at_limit) == MAX_PAYLOAD_BYTES

    over = invocations(post(at_limit + b" "))
    at = invocations(post(at_limit))

    assert over.status == 413
    assert answer_json(over)["__type"] == "RequestTooLargeException"
    assert at.status == 200
    assert len(function.calls) == 1


def test_a_failing_function_is_reported_as_lambda_reports_it(
    function: Function, http: Http
) -> None:
    failing = Function(fails=RuntimeError("the registry could not write"))
    invocations = Invocations(failing, http, timeout_seconds=30.0)

    answer = invocations(post())

    assert answer.status == 200
    assert answer.header("X-Amz-Function-Error") == "Unhandled"
    assert answer_json(answer) == {
        "errorMessage": "the registry could not write",
        "errorType": "RuntimeError",
    }


def test_an_event_invocation_answers_202_with_no_body(
    invocations: Invocations, function: Function
) -> None:
    answer = invocations(post(headers=(("X-Amz-Invocation-Type", "Event"),)))

    assert (answer.status, answer.body) == (202, b"")
    assert len(function.calls) == 1


def test_a_request_response_invocation_answers_the_result(invocations: Invocations) -> None:
    answer = invocations(post(headers=(("x-amz-invocation-type", "RequestResponse"),)))

    assert answer.status == 200
    assert answer_json(answer) == {"outcome": "ignored"}


def test_a_dry_run_checks_the_request_but_runs_nothing(
    invocations: Invocations, function: Function
) -> None:
    answer = invocations(post(headers=(("X-Amz-Invocation-Type", "DryRun"),)))

    assert (answer.status, answer.body) == (204, b"")
    assert function.calls == []


def test_a_dry_run_is_still_refused_to_a_client_that_may_not_invoke(
    invocations: Invocations, function: Function
) -> None:
    headers = (("X-Amz-Invocation-Type", "DryRun"),)

    assert invocations(post(source_ip="10.0.0.5", headers=headers)).status == 403
    assert function.calls == []


def test_the_invoke_url_is_lambdas_path_under_the_base_url() -> None:
    assert invoke_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000" + PATH
    assert invoke_url("http://[::1]:9000", "other").endswith("/functions/other/invocations")
