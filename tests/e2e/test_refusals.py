"""Every refusal, over real HTTP to `lambdamesh dev`, with its status and stable code."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Mesh
from tests.e2e.processes import eventually, http
from tests.helpers import bearer, service_token

GOOD = {"version": "v1", "host": "127.0.0.1", "port": 8080}
PATH = "/registry/services/refuse/instances/r-0"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: the upstream timeout case."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        yield int(silent.getsockname()[1])


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({**GOOD, "port": 65536}, "invalid_request"),
        ({**GOOD, "host": "169.254.169.254"}, "host_not_allowed"),
        ({**GOOD, "host": "fe80::1"}, "host_not_allowed"),
        ({**GOOD, "host": "0.0.0.0"}, "host_not_allowed"),
        ({**GOOD, "host": "239.1.1.1"}, "host_not_allowed"),
        ({**GOOD, "host": "bad host!"}, "invalid_request"),
        ({**GOOD, "metadata": {"k": 1}}, "invalid_request"),
        ({**GOOD, "lease_seconds": 1}, "invalid_request"),
    ],
)
def test_bad_registrations_answer_400_and_keep_what_is_stored(
    mesh: Mesh, body: dict[str, object], code: str
) -> None:
    assert mesh.put(PATH, GOOD).status in (200, 201)

    answer = mesh.put(PATH, body)

    assert answer.status == 400
    assert answer.json()["error"]["code"] == code
    assert mesh.live("refuse") == {"r-0"}


def test_tokens_are_checked(mesh: Mesh) -> None:
    no_token = http("PUT", mesh.url + PATH, b"{}", {"Content-Type": "application/json"})
    wrong_service = mesh.put(PATH, GOOD, service_token("someone-else"))
    bad_signature = mesh.put(PATH, GOOD, service_token("refuse")[:-4] + "AAAA")

    assert no_token.status == 401
    assert wrong_service.status == 403
    assert bad_signature.status == 401


def test_an_oversized_registration_answers_413(mesh: Mesh) -> None:
    answer = mesh.put(PATH, {**GOOD, "metadata": {"k": "x" * 20_000}})

    assert answer.status == 413


def test_gateway_errors_have_their_status_and_code(mesh: Mesh, silent_port: int) -> None:
    assert mesh.put("/registry/services/gone/instances/g-0", {**GOOD, "status": "DOWN"}).status
    assert mesh.put(
        "/registry/services/unreachable/instances/u-0", {**GOOD, "port": closed_port()}
    ).status
    assert mesh.put("/registry/services/slow/instances/s-0", {**GOOD, "port": silent_port}).status
    eventually(lambda: mesh.live("slow") == {"s-0"}, 5, "registration not visible")

    cases = {
        "/api/v1/nosuch/v1/x": (404, "service_not_found"),
        "/api/v1/gone/v2/x": (404, "version_not_found"),
        "/api/v1/gone/v1/x": (503, "no_live_instance"),
        "/api/v1/unreachable/v1/x": (502, "upstream_unreachable"),
        "/api/v1/slow/v1/x": (504, "upstream_timeout"),
    }
    for path, (status, code) in cases.items():
        answer = mesh.get(path)
        assert (answer.status, answer.json()["error"]["code"]) == (status, code), path
        assert answer.json()["error"]["request_id"] == answer.headers["X-Request-Id"]


def test_health_needs_no_token(mesh: Mesh) -> None:
    assert mesh.get("/health").status == 200
    assert mesh.get("/registry/services", headers=bearer("nonsense")).status == 401
