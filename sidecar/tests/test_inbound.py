"""The inbound port on loopback: real TLS from callers holding the registry's certificates (or
none, or another CA's, or an expired one), the service's mode and intentions, flow control,
and the app behind it, which a refused call never reaches."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable

import pytest
from inbound_kit import SERVICE, Port
from mesh_certificates import STAGE, TRUST_DOMAIN, answer, authority

from chalicelib.auth import ADMIN_SCOPE, Principal
from chalicelib.certificates import CertificateIssuer
from lambdamesh_routing.policy import IntentionRule, Intentions, Policy
from lambdamesh_routing.wire import MeshSettings
from lambdamesh_sidecar.identity import Credentials, load
from lambdamesh_sidecar.inbound import CLIENT_CERT_HEADER


def orders() -> Credentials:
    return load(answer("orders"), "orders")


def test_a_caller_with_a_mesh_certificate_reaches_the_app_which_learns_who_called(
    start: Callable[..., Port],
) -> None:
    port = start()
    status, seen, headers = port.call(
        orders(), headers={CLIENT_CERT_HEADER: "By=x;URI=spiffe://lambdamesh/test/admin"}
    )
    assert status == 200, seen
    assert seen["headers"][CLIENT_CERT_HEADER] == (
        f"By=spiffe://lambdamesh/{STAGE}/{SERVICE};URI=spiffe://lambdamesh/{STAGE}/orders"
    )
    assert seen["headers"]["X-Forwarded-Proto"] == "https"
    assert headers["X-Request-Id"]
    assert len(port.app.seen) == 1


@pytest.mark.parametrize(
    "caller",
    ["plain text", "TLS without a certificate", "a certificate of another stage"],
)
def test_a_strict_service_refuses_callers_without_its_mesh_identity(
    start: Callable[..., Port], caller: str
) -> None:
    port = start()
    if caller == "plain text":
        status, error, _ = port.call(None, tls=False)
    elif caller == "TLS without a certificate":
        status, error, _ = port.call(None)
    else:  # the same CA, the registry of another stage
        issuer = CertificateIssuer(authority, TRUST_DOMAIN, "prod", 3600, time.time)
        issued = issuer.issue(Principal(ADMIN_SCOPE), "orders")
        status, error, _ = port.call(load(issued, "orders"))
    assert (status, error["error"]["code"]) == (403, "mtls_required")
    assert port.app.seen == []
    [refusal] = [r for r in port.records if r.getMessage().startswith("inbound call refused")]
    assert "error=mtls_required" in refusal.getMessage()


def test_a_permissive_service_takes_plain_text_too(start: Callable[..., Port]) -> None:
    port = start()
    port.views.set(None, MeshSettings(mtls="permissive"))
    port.policy.read()
    status, seen, _ = port.call(None, tls=False, headers={CLIENT_CERT_HEADER: "URI=forged"})
    assert status == 200
    assert CLIENT_CERT_HEADER not in seen["headers"]
    assert seen["headers"]["X-Forwarded-Proto"] == "http"
    status, seen, _ = port.call(orders())
    assert status == 200 and seen["headers"][CLIENT_CERT_HEADER].endswith("/orders")


@pytest.mark.parametrize("which", ["another CA's", "an expired"])
def test_a_certificate_the_mesh_did_not_issue_or_that_expired_fails_the_handshake(
    start: Callable[..., Port], which: str
) -> None:
    port = start()
    if which == "another CA's":
        document = answer("orders", ca=authority("another CA"))
    else:
        document = answer("orders", life_seconds=60, now=time.time() - 3600)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        port.call(load(document, "orders"))
    assert port.app.seen == []


def test_intentions_decide_who_may_call_what_and_a_denial_names_both_sides(
    start: Callable[..., Port],
) -> None:
    port = start()
    intentions = Intentions(
        default="deny",
        rules=(
            IntentionRule("orders", "deny", path_prefix="/admin"),
            IntentionRule("orders", "allow", methods=("GET",)),
        ),
    )
    port.views.set(Policy(intentions=intentions), MeshSettings(mtls="strict"))
    port.policy.read()
    caller = orders()
    assert port.call(caller, "/items")[0] == 200
    for path, method in [("/admin/users", "GET"), ("/public/../admin", "GET"), ("/items", "POST")]:
        status, error, _ = port.call(caller, path, method=method, body=b"{}")
        assert (status, error["error"]["code"]) == (403, "intention_denied"), path
    status, _, _ = port.call(load(answer("inventory"), "inventory"), "/items")
    assert status == 403
    assert [seen["path"] for seen in port.app.seen] == ["/items"]
    denials = [r.getMessage() for r in port.records if "intention_denied" in r.getMessage()]
    assert len(denials) == 4
    assert f"caller=spiffe://lambdamesh/{STAGE}/orders" in denials[0]
    assert f"callee=spiffe://lambdamesh/{STAGE}/{SERVICE}" in denials[0]


def test_a_burst_beyond_the_apps_turns_and_queue_is_answered_503_with_retry_after(
    start: Callable[..., Port],
) -> None:
    port = start(max_concurrency=1, max_queue=0)
    caller = orders()
    results: list[int] = []
    slow = threading.Thread(target=lambda: results.append(port.call(caller, "/slow")[0]))
    slow.start()
    while not port.app.seen:
        time.sleep(0.005)
    status, error, headers = port.call(caller, "/fast")
    assert (status, error["error"]["code"], headers["Retry-After"]) == (
        503,
        "sidecar_overloaded",
        "1",
    )
    port.app.release.set()
    slow.join(5)
    assert results == [200]
    assert [seen["path"] for seen in port.app.seen] == ["/slow"]


def test_an_app_that_is_not_listening_is_a_502(start: Callable[..., Port]) -> None:
    port = start()
    port.app.server.shutdown()
    port.app.server.server_close()
    status, error, _ = port.call(orders())
    assert (status, error["error"]["code"]) == (502, "upstream_unreachable")


def test_a_caller_that_never_finishes_its_handshake_is_dropped(
    start: Callable[..., Port], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lambdamesh_sidecar.inbound.HANDSHAKE_SECONDS", 0.1)
    port = start()
    with socket.create_connection(("127.0.0.1", port.port), timeout=5) as stalled:
        stalled.sendall(b"\x16\x03\x01")  # a handshake record begun, never finished
        assert stalled.recv(1024) == b""  # closed by the port
    assert port.call(orders())[0] == 200


def test_a_method_override_never_reaches_the_app(start: Callable[..., Port]) -> None:
    """The intentions decided on the request's own method: the app must run that one."""
    port = start()
    overrides = {
        "X-HTTP-Method-Override": "DELETE",
        "X-HTTP-Method": "DELETE",
        "X-Method-Override": "DELETE",
        "X_HTTP_Method_Override": "DELETE",
    }
    status, seen, _ = port.call(orders(), headers=overrides)
    assert status == 200
    assert not {name.lower().replace("_", "-") for name in seen["headers"]} & {
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    }
