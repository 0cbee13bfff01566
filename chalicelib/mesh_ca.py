"""The mesh CA: what signs service certificates, and what every member of the mesh trusts.

The CA is kept as one PEM text (the Secrets Manager secret ``LAMBDAMESH_MESH_CA_SECRET``
names, or ``LAMBDAMESH_MESH_CA`` itself), in this order:

1. the signing CA's private key;
2. the signing CA's certificate;
3. any further CA certificates the mesh still trusts (at most ``MAX_AUTHORITIES`` in all):
   the one being rotated in, or the one being rotated out.

Every certificate issued carries the whole list as its trust bundle, so a CA is rotated in
three steps, each after a certificate's life has passed (docs/mtls.md): trust the new CA
beside the old; sign with the new one; drop the old one.

A service certificate names one identity (``lambdamesh_routing.identity``) as its only URI
name, is good for both ends of a TLS connection, and has an EC P-256 key the registry
generates: the sidecar runs on the standard library, which can load a key but not make one.

``cryptography`` is imported by the functions that need it, so a cold start that issues no
certificate never loads it.
"""

from __future__ import annotations

import datetime
import re
from typing import TYPE_CHECKING, NamedTuple

from chalicelib.errors import ConfigError
from lambdamesh_routing.identity import Identity

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
    from cryptography.x509 import Certificate, KeyUsage

MAX_AUTHORITIES = 4
MAX_CA_TEXT = 32 * 1024
# Clocks in a fleet disagree by seconds; a certificate valid from a little before it was
# issued is not refused by a peer whose clock runs behind.
CLOCK_SKEW = datetime.timedelta(minutes=5)
# A CA with less life left than this issues nothing: its certificates would lapse on arrival.
MIN_CA_LIFE_LEFT = datetime.timedelta(minutes=1)
_PEM_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9 ]{1,40})-----\r?\n[A-Za-z0-9+/=\r\n]*?-----END \1-----", re.DOTALL
)
_KEY_LABELS = frozenset({"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"})


class MeshCANotConfigured(ConfigError):
    """The stage has no mesh CA: it issues no certificate."""

    code = "mesh_ca_not_configured"


class MeshCAInvalid(ConfigError):
    """The mesh CA's text cannot sign: what is wrong is logged and said, never its key."""

    code = "mesh_ca_invalid"


class Issued(NamedTuple):
    identity: Identity
    certificate: str
    """PEM: the service's certificate."""
    private_key: str
    """PEM (PKCS #8, unencrypted): its key, which the registry keeps no copy of."""
    trust_bundle: str
    """PEM: every CA certificate the mesh trusts, the signing one first."""
    serial: str
    not_before: datetime.datetime
    not_after: datetime.datetime


class MeshCA:
    """A parsed mesh CA; ``load`` checks it can sign."""

    def __init__(
        self,
        key: CertificateIssuerPrivateKeyTypes,
        certificates: tuple[Certificate, ...],
    ) -> None:
        self._key = key
        self.certificates = certificates

    @property
    def signer(self) -> Certificate:
        return self.certificates[0]

    @classmethod
    def load(cls, text: str) -> MeshCA:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        key_pem, certificate_pems = _pem_parts(text)
        try:
            key = serialization.load_pem_private_key(key_pem.encode(), password=None)
            parsed = tuple(x509.load_pem_x509_certificate(c.encode()) for c in certificate_pems)
        except (ValueError, TypeError) as exc:
            # The library's message names the format, never the key's bytes.
            raise MeshCAInvalid(f"the mesh CA does not parse: {exc}") from None
        _check_key(key, parsed[0])
        for position, certificate in enumerate(parsed, start=1):
            try:
                ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                ca = False
            if not ca:
                raise MeshCAInvalid(
                    f"certificate {position} of the mesh CA is not a CA certificate"
                )
        return cls(key, parsed)  # type: ignore[arg-type]

    @property
    def trust_bundle(self) -> str:
        from cryptography.hazmat.primitives.serialization import Encoding

        return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in self.certificates)

    def issue(
        self, identity: Identity, now: datetime.datetime, lifetime: datetime.timedelta
    ) -> Issued:
        """A certificate for ``identity``, good from a little before ``now`` for ``lifetime``,
        or until the signing CA expires if that is sooner."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        signer = self.signer
        ca_end = signer.not_valid_after_utc
        if ca_end - now < MIN_CA_LIFE_LEFT or signer.not_valid_before_utc > now:
            raise MeshCAInvalid(
                f"the signing mesh CA is valid from {signer.not_valid_before_utc.isoformat()} "
                f"until {ca_end.isoformat()}: rotate it (docs/mtls.md)"
            )
        not_before = max(now - CLOCK_SKEW, signer.not_valid_before_utc)
        not_after = min(now + lifetime, ca_end)
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(
            signer.public_key()  # type: ignore[arg-type]
        )
        serial = x509.random_serial_number()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.name)]))
            .issuer_name(signer.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage("digital_signature"), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(issuer_key_id, critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return Issued(
            identity=identity,
            certificate=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            private_key=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode("ascii"),
            trust_bundle=self.trust_bundle,
            serial=f"{serial:x}",
            not_before=not_before,
            not_after=not_after,
        )


def _pem_parts(text: str) -> tuple[str, list[str]]:
    """The private key's PEM block and the certificates', in order."""
    if len(text) > MAX_CA_TEXT:
        raise MeshCAInvalid(f"the mesh CA is {len(text)} characters; the limit is {MAX_CA_TEXT}")
    blocks = [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(text)]
    keys = [block for label, block in blocks if label in _KEY_LABELS]
    certificates = [block for label, block in blocks if label == "CERTIFICATE"]
    if len(keys) != 1:
        raise MeshCAInvalid(
            f"the mesh CA must hold exactly one private key, the signing CA's; found {len(keys)}"
        )
    if not 1 <= len(certificates) <= MAX_AUTHORITIES:
        raise MeshCAInvalid(
            f"the mesh CA must hold 1 to {MAX_AUTHORITIES} CA certificates, the signing one "
            f"first; found {len(certificates)}"
        )
    return keys[0], certificates


def _check_key(key: object, signer: Certificate) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise MeshCAInvalid("the mesh CA's EC key must be on P-256 or P-384")
    elif isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise MeshCAInvalid("the mesh CA's RSA key must have at least 2048 bits")
    else:
        raise MeshCAInvalid("the mesh CA's key must be an EC (P-256, P-384) or RSA key")
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != signer.public_key().public_bytes(*spki):
        raise MeshCAInvalid(
            "the mesh CA's private key does not belong to its first certificate: put the "
            "signing CA's key, then its certificate, then any other CA certificate trusted"
        )


def new_authority(common_name: str, now: datetime.datetime, lifetime: datetime.timedelta) -> str:
    """A new self-signed mesh CA, as the PEM text ``MeshCA.load`` reads (key, certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lambdamesh"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage("digital_signature", "key_cert_sign", "crl_sign"), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem.decode("ascii") + certificate.public_bytes(serialization.Encoding.PEM).decode(
        "ascii"
    )


def _key_usage(*allowed: str) -> KeyUsage:
    from cryptography.x509 import KeyUsage

    uses = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    return KeyUsage(**{use: use in allowed for use in uses})
