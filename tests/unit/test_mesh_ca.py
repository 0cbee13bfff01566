"""The mesh CA: what it accepts as its PEM text, and the service certificates it signs."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from chalicelib.mesh_ca import (
    CLOCK_SKEW,
    MAX_AUTHORITIES,
    MAX_CA_TEXT,
    Issued,
    MeshCA,
    MeshCAInvalid,
    new_authority,
)
from lambdamesh_routing.identity import Identity, peer_identity
from tests.helpers import mesh_ca_text

NOW = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
ORDERS = Identity("lambdamesh", "prod", "orders")


def authority(
    name: str = "ca", now: datetime.datetime = NOW, life: datetime.timedelta = 365 * DAY
) -> str:
    return new_authority(name, now, life)


def certificates_of(text: str) -> str:
    return text[text.index("-----BEGIN CERTIFICATE-----") :]


def key_of(text: str) -> str:
    return text[: text.index("-----BEGIN CERTIFICATE-----")]


def test_a_service_certificate_names_its_identity_only_and_serves_both_ends() -> None:
    ca = MeshCA.load(authority())
    issued = ca.issue(ORDERS, NOW, DAY)
    certificate = x509.load_pem_x509_certificate(issued.certificate.encode())
    certificate.verify_directly_issued_by(ca.signer)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in names] == ["spiffe://lambdamesh/prod/orders"]
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert certificate.not_valid_before_utc == issued.not_before == NOW - CLOCK_SKEW
    assert certificate.not_valid_after_utc == issued.not_after == NOW + DAY
    assert issued.serial == f"{certificate.serial_number:x}"
    key = serialization.load_pem_private_key(issued.private_key.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert key.public_key() == certificate.public_key()
    # Each certificate has a key of its own.
    again = ca.issue(ORDERS, NOW, DAY)
    assert again.private_key != issued.private_key and again.serial != issued.serial


def test_a_certificate_ends_with_its_signing_ca() -> None:
    ca = MeshCA.load(authority(life=2 * DAY))
    issued = ca.issue(ORDERS, NOW + DAY + DAY / 2, DAY)
    assert issued.not_after == ca.signer.not_valid_after_utc


@pytest.mark.parametrize(
    ("now", "life"),
    [
        (NOW + 2 * DAY, DAY),  # expired
        (NOW + DAY - datetime.timedelta(seconds=30), DAY),  # less than a minute left
        (NOW - DAY, 365 * DAY),  # not yet valid
    ],
)
def test_a_ca_out_of_its_life_signs_nothing(
    now: datetime.datetime, life: datetime.timedelta
) -> None:
    ca = MeshCA.load(authority(life=life))
    with pytest.raises(MeshCAInvalid, match="rotate it"):
        ca.issue(ORDERS, now, DAY)


def test_the_trust_bundle_lists_every_ca_the_signing_one_first() -> None:
    new, old = authority("new"), authority("old")
    ca = MeshCA.load(new + certificates_of(old))
    assert [c.subject.rfc4514_string() for c in ca.certificates] == [
        "CN=new,O=lambdamesh",
        "CN=old,O=lambdamesh",
    ]
    issued = ca.issue(ORDERS, NOW, DAY)
    bundle = x509.load_pem_x509_certificates(issued.trust_bundle.encode())
    assert bundle == list(ca.certificates)
    x509.load_pem_x509_certificate(issued.certificate.encode()).verify_directly_issued_by(bundle[0])


def rsa_key(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def leaf_certificate() -> str:
    """A certificate that is no CA's: a service certificate."""
    return MeshCA.load(authority()).issue(ORDERS, NOW, DAY).certificate


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "exactly one private key"),
        (certificates_of(mesh_ca_text()), "exactly one private key"),
        (key_of(mesh_ca_text()), "1 to 4 CA certificates"),
        (mesh_ca_text() + key_of(mesh_ca_text("other")), "exactly one private key"),
        (key_of(mesh_ca_text("other")) + certificates_of(mesh_ca_text()), "does not belong"),
        (mesh_ca_text() + certificates_of(mesh_ca_text()) * MAX_AUTHORITIES, "1 to 4"),
        (mesh_ca_text() + leaf_certificate(), "certificate 2 of the mesh CA is not a CA"),
        (rsa_key(1024) + certificates_of(mesh_ca_text()), "at least 2048 bits"),
        (
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            + certificates_of(mesh_ca_text()),
            "does not parse",
        ),
        ("x" * (MAX_CA_TEXT + 1), f"the limit is {MAX_CA_TEXT}"),
    ],
)
def test_a_ca_text_that_cannot_sign_is_refused_saying_why_and_never_showing_its_key(
    text: str, problem: str
) -> None:
    with pytest.raises(MeshCAInvalid, match=problem) as refused:
        MeshCA.load(text)
    assert refused.value.code == "mesh_ca_invalid"
    assert "PRIVATE KEY" not in refused.value.message
    for line in text.splitlines():
        if len(line) > 20:
            assert line not in refused.value.message


def files(tmp_path: Path, name: str, issued: Issued) -> tuple[str, str]:
    certificate, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    certificate.write_text(issued.certificate)
    key.write_text(issued.private_key)
    return str(certificate), str(key)


def mutual_tls(
    tmp_path: Path, server: Issued, client: Issued, server_trusts: str, client_trusts: str
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """One TLS 1.3 handshake on loopback, each side asking for the other's certificate:
    the certificate each side saw, as ``getpeercert`` gives it."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*files(tmp_path, "server", server))
    server_context.load_verify_locations(cadata=server_trusts)
    server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False  # identities are URI names, checked after
    client_context.load_cert_chain(*files(tmp_path, "client", client))
    client_context.load_verify_locations(cadata=client_trusts)
    seen: dict[str, Mapping[str, Any] | None] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def accept() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True) as tls:
                    seen["server"] = tls.getpeercert()
            except ssl.SSLError:
                seen["server"] = None

        thread = threading.Thread(target=accept)
        thread.start()
        raw = socket.create_connection(listener.getsockname())
        with raw, client_context.wrap_socket(raw) as tls:
            seen["client"] = tls.getpeercert()
            tls.recv(1)  # the server's close, or its refusal of our certificate
        thread.join(5)
    return seen.get("server"), seen.get("client")


def test_two_services_prove_their_identities_to_each_other_with_the_standard_library(
    tmp_path: Path,
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    ca = MeshCA.load(authority(now=now))
    orders = ca.issue(ORDERS, now, DAY)
    payments = ca.issue(Identity("lambdamesh", "prod", "payments"), now, DAY)
    seen_by_server, seen_by_client = mutual_tls(
        tmp_path, orders, payments, ca.trust_bundle, ca.trust_bundle
    )
    assert peer_identity(seen_by_server, "lambdamesh", "prod") == Identity(
        "lambdamesh", "prod", "payments"
    )
    assert peer_identity(seen_by_client, "lambdamesh", "prod") == ORDERS


def test_a_certificate_from_another_ca_is_refused_in_the_handshake(tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    ours, theirs = MeshCA.load(authority("ours", now)), MeshCA.load(authority("theirs", now))
    server = ours.issue(ORDERS, now, DAY)
    intruder = theirs.issue(Identity("lambdamesh", "prod", "payments"), now, DAY)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        mutual_tls(tmp_path, server, intruder, ours.trust_bundle, ours.trust_bundle)
