"""The sidecar's certificate: loaded from the registry's answer into TLS contexts, the key
left on no disk, and renewed at the time the registry names."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from mesh_certificates import STAGE, TRUST_DOMAIN, answer, authority

from lambdamesh_routing.identity import Identity, peer_identity
from lambdamesh_sidecar.client import Unavailable
from lambdamesh_sidecar.identity import Credentials, IdentityKeeper, InvalidCertificate, load


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """One handshake on loopback: the certificate each side saw (None: none)."""
    seen: dict[str, Any] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def accept() -> None:
            connection, _ = listener.accept()
            try:
                with server.wrap_socket(connection, server_side=True) as tls:
                    seen["server"] = tls.getpeercert()
                    tls.sendall(b"x")
            except (ssl.SSLError, OSError) as exc:
                seen["server_error"] = exc

        thread = threading.Thread(target=accept)
        thread.start()
        raw = socket.create_connection(listener.getsockname())
        with raw, client.wrap_socket(raw) as tls:
            seen["client"] = tls.getpeercert()
            tls.recv(1)
        thread.join(5)
    if "server_error" in seen:
        raise seen["server_error"]
    return seen.get("server"), seen.get("client")


def test_two_sidecars_prove_their_services_to_each_other() -> None:
    orders, payments = load(answer("orders"), "orders"), load(answer("payments"), "payments")
    assert orders.identity == Identity(TRUST_DOMAIN, STAGE, "orders")
    seen_by_payments, seen_by_orders = handshake(payments.server, orders.client)
    assert peer_identity(seen_by_payments, TRUST_DOMAIN, STAGE) == orders.identity
    assert peer_identity(seen_by_orders, TRUST_DOMAIN, STAGE) == payments.identity


def test_a_caller_without_a_certificate_may_connect_and_proves_nothing() -> None:
    payments = load(answer("payments"), "payments")
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname = False
    anonymous.verify_mode = ssl.CERT_NONE
    seen_by_payments, _ = handshake(payments.server, anonymous)
    assert peer_identity(seen_by_payments, TRUST_DOMAIN, STAGE) is None


def test_a_certificate_from_another_ca_fails_the_handshake_both_ways() -> None:
    ours = load(answer("payments"), "payments")
    theirs = load(answer("orders", ca=authority("another CA")), "orders")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(ours.server, theirs.client)
    with pytest.raises(ssl.SSLError):
        handshake(theirs.server, ours.client)


def test_an_expired_certificate_fails_the_handshake() -> None:
    expired = answer("orders", life_seconds=60, now=time.time() - 3600)
    ours = load(answer("payments"), "payments")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(ours.server, load(expired, "orders").client)


def test_tls_below_1_3_is_refused() -> None:
    ours = load(answer("payments"), "payments")
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(ours.server, old)


def test_the_key_is_deleted_from_disk_once_loaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made: list[str] = []
    real = tempfile.mkdtemp

    def mkdtemp(**kwargs: Any) -> str:
        made.append(real(dir=tmp_path, **kwargs))
        assert os.stat(made[-1]).st_mode & 0o077 == 0
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    load(answer("orders"), "orders")
    assert not any(os.path.exists(folder) for folder in made)
    assert list(tmp_path.iterdir()) == []


def test_a_certificate_loads_where_no_directory_may_be_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As in the sidecar's container, whose root file system is read-only: tempfile finds no
    # directory to write in.
    monkeypatch.setattr(tempfile, "tempdir", "/nonexistent/lambdamesh")
    credentials = load(answer("orders"), "orders")
    assert credentials.identity == Identity(TRUST_DOMAIN, STAGE, "orders")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"certificate": None}, "no certificate"),
        ({"private_key": 42}, "no private_key"),
        ({"not_after": "soon"}, "no not_after"),
        ({"renew_at": True}, "no renew_at"),
        ({"identity": "spiffe://lambdamesh/test/payments"}, "not service 'orders'"),
        ({"identity": "https://orders"}, "not service 'orders'"),
        (
            {"certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
            "does not load",
        ),
    ],
)
def test_an_answer_that_is_no_certificate_for_this_service_is_refused(
    change: dict[str, Any], problem: str
) -> None:
    document = {**answer("orders"), **change}
    with pytest.raises(InvalidCertificate, match=problem) as refused:
        load(document, "orders")
    assert "PRIVATE" not in str(refused.value)


def test_a_key_that_is_not_the_certificates_is_refused() -> None:
    document = {**answer("orders"), "private_key": answer("orders")["private_key"]}
    with pytest.raises(InvalidCertificate, match="does not load"):
        load(document, "orders")


class Answers:
    """The registry's answers in turn: a certificate renewed ``renew_in`` seconds after it is
    issued, or an error."""

    def __init__(self, *script: Any, renew_in: float = 0.05) -> None:
        self.script = list(script)
        self.renew_in = renew_in
        self.asked = threading.Semaphore(0)

    def __call__(self) -> dict[str, Any]:
        self.asked.release()
        step = self.script.pop(0) if self.script else "certificate"
        if isinstance(step, Exception):
            raise step
        return {**answer("orders"), "renew_at": time.time() + self.renew_in}


class NoJitter:
    def uniform(self, a: float, b: float) -> float:
        return a


def run_until(keeper: IdentityKeeper, answers: Answers, asks: int) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=keeper.run, args=(stop,))
    thread.start()
    try:
        for _ in range(asks):
            assert answers.asked.acquire(timeout=5)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_the_certificate_is_renewed_when_the_registry_says_and_serves_meanwhile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = Answers()
    keeper = IdentityKeeper(answers, "orders", rng=NoJitter(), logger=logging.getLogger("t"))
    first = keeper.obtain()
    answers.asked.acquire()
    with caplog.at_level(logging.INFO, logger="t"):
        run_until(keeper, answers, asks=2)
    current = keeper.current
    assert isinstance(current, Credentials) and current.serial != first.serial
    assert "certificate issued" in caplog.text
    assert "PRIVATE" not in caplog.text


def test_a_failed_renewal_is_retried_and_logged_and_the_old_certificate_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = Answers(Unavailable("the registry is down"), Unavailable("still down"))
    keeper = IdentityKeeper(answers, "orders", rng=NoJitter(), logger=logging.getLogger("t"))
    keeper._current = load({**answer("orders"), "renew_at": time.time()}, "orders")
    held = keeper.current
    with caplog.at_level(logging.INFO, logger="t"):
        run_until(keeper, answers, asks=3)
    assert "certificate not renewed" in caplog.text and "the registry is down" in caplog.text
    assert keeper.current is not held  # the third ask succeeded
