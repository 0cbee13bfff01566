"""`lambdamesh mesh-ca`: make the mesh CA a stage's secret holds, and read one back.

* `lambdamesh mesh-ca new`: a new CA (its key, then its certificate) on stdout.
* `lambdamesh mesh-ca combine SIGNER [TRUSTED ...]`: the text of a rotation's step: SIGNER's
  key and certificates first, then the certificates of each TRUSTED text (docs/mtls.md).
* `lambdamesh mesh-ca show [FILE]`: each certificate of a CA text (or stdin), in order: which
  signs, its subject, its fingerprint and its life; the key is never printed. Refuses a text
  the registry could not sign with, saying why.

Both run offline; storing the text in Secrets Manager is the operator's own
``aws secretsmanager put-secret-value``, so the CA's key passes through no other program.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from pathlib import Path
from typing import TextIO

from chalicelib.mesh_ca import MAX_CA_TEXT, MeshCA, new_authority
from lambdamesh.apiclient import UsageError

_CERTIFICATE = re.compile(
    r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*?-----END CERTIFICATE-----\n?"
)
DEFAULT_DAYS = 365
MAX_DAYS = 10 * 365
DESCRIPTION = """\
The mesh CA signs every service certificate the registry issues, and every
member of the mesh trusts the CA certificates stored beside it. A stage reads
it from the Secrets Manager secret LAMBDAMESH_MESH_CA_SECRET names."""
EPILOG = """\
examples:
  lambdamesh mesh-ca new > ca.pem
  aws secretsmanager create-secret --name lambdamesh/prod/mesh-ca \\
      --secret-string file://ca.pem
  lambdamesh mesh-ca show ca.pem

rotation: store each step's text in the secret, and wait one certificate life
(LAMBDAMESH_MESH_CERT_SECONDS) and the CA's 5-minute cache before the next:
  lambdamesh mesh-ca new > new.pem
  lambdamesh mesh-ca combine ca.pem new.pem > step1.pem   # old signs, new trusted
  lambdamesh mesh-ca combine new.pem ca.pem > step2.pem   # new signs, old trusted
  lambdamesh mesh-ca combine new.pem > step3.pem          # old dropped"""


def add_mesh_ca_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mesh_ca = commands.add_parser(
        "mesh-ca",
        help="make or read the mesh CA that signs service certificates (offline)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = mesh_ca.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = actions.add_parser(
        "new",
        help="print a new CA: its key, then its certificate",
        description="Print a new mesh CA (an EC P-256 key, then its self-signed certificate) "
        "for a stage's secret. With --trust, the CA certificates of FILE follow it: they stay "
        "trusted while certificates they signed are still in use.",
    )
    new.add_argument(
        "--days",
        type=int,
        default=DEFAULT_DAYS,
        help=f"how long the CA lasts, 1..{MAX_DAYS} (default: %(default)s)",
    )
    new.add_argument(
        "--name",
        default=None,
        help="its common name (default: 'lambdamesh mesh CA' and today's date)",
    )
    combine = actions.add_parser(
        "combine",
        help="print a rotation step's text: SIGNER's key and certificate, then others trusted",
        description="Print SIGNER's key and CA certificates, then the CA certificates of "
        "each TRUSTED text not already listed: the text of one step of a rotation. "
        "Refuses what the registry could not sign with.",
    )
    combine.add_argument("signer", type=Path, help="the CA text whose key signs")
    combine.add_argument("trusted", nargs="*", type=Path, help="CA texts trusted beside it")
    show = actions.add_parser(
        "show",
        help="list a CA text's certificates; never its key",
        description="List each certificate of a mesh CA text, the signing one first, and "
        "refuse a text the registry could not sign with, saying why.",
    )
    show.add_argument("file", nargs="?", type=Path, help="the CA text (default: stdin)")


def mesh_ca_command(args: argparse.Namespace) -> int:
    if args.action == "new":
        return new_command(args.days, args.name, sys.stdout)
    if args.action == "combine":
        return combine_command(args.signer, args.trusted, sys.stdout)
    return show_command(args.file, sys.stdout)


def new_command(days: int, name: str | None, out: TextIO) -> int:
    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"--days must be 1..{MAX_DAYS}, got {days}")
    now = datetime.datetime.now(datetime.UTC)
    life = datetime.timedelta(days=days)
    out.write(new_authority(name or f"lambdamesh mesh CA {now:%Y-%m-%d}", now, life))
    return 0


def combine_command(signer: Path, trusted: list[Path], out: TextIO) -> int:
    text = _read(signer)
    MeshCA.load(text)
    listed = {text[m.start() : m.end()] for m in _CERTIFICATE.finditer(text)}
    for path in trusted:
        for match in _CERTIFICATE.finditer(MeshCA.load(_read(path)).trust_bundle):
            if match.group(0) not in listed:
                listed.add(match.group(0))
                text += match.group(0)
    MeshCA.load(text)  # at most MAX_AUTHORITIES in all, checked before anything is printed
    out.write(text if text.endswith("\n") else text + "\n")
    return 0


def show_command(path: Path | None, out: TextIO) -> int:
    ca = MeshCA.load(_read(path))
    from cryptography.hazmat.primitives import hashes

    for position, certificate in enumerate(ca.certificates):
        role = "signs  " if position == 0 else "trusted"
        fingerprint = certificate.fingerprint(hashes.SHA256()).hex()[:16]
        print(
            f"{role}  {certificate.subject.rfc4514_string()}  sha256:{fingerprint}  "
            f"{certificate.not_valid_before_utc:%Y-%m-%d} .. "
            f"{certificate.not_valid_after_utc:%Y-%m-%d}",
            file=out,
        )
    return 0


def _read(path: Path | None) -> str:
    try:
        text = (
            sys.stdin.read(MAX_CA_TEXT + 1) if path is None else path.read_text()[: MAX_CA_TEXT + 1]
        )
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the CA text: {exc}") from None
    return text
