"""`lambdamesh mesh-ca`: a new CA, a rotation's steps, and what `show` says of a CA text."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.mesh_ca import MAX_AUTHORITIES, MeshCA
from lambdamesh.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def new(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str) -> Path:
    status, out, _ = run(capsys, "mesh-ca", "new", "--name", name, "--days", "30")
    assert status == 0
    path = tmp_path / f"{name}.pem"
    path.write_text(out)
    return path


def subjects(text: str) -> list[str]:
    return [c.subject.rfc4514_string() for c in MeshCA.load(text).certificates]


def test_new_prints_a_ca_the_registry_can_sign_with(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = new(capsys, tmp_path, "prod").read_text()
    ca = MeshCA.load(text)
    assert subjects(text) == ["CN=prod,O=lambdamesh"]
    life = ca.signer.not_valid_after_utc - ca.signer.not_valid_before_utc
    assert life.days == 30  # and the five minutes of clock skew before now


def test_the_three_steps_of_a_rotation(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    old, fresh = new(capsys, tmp_path, "old"), new(capsys, tmp_path, "new")
    status, step1, _ = run(capsys, "mesh-ca", "combine", str(old), str(fresh))
    assert status == 0
    assert subjects(step1) == ["CN=old,O=lambdamesh", "CN=new,O=lambdamesh"]
    assert MeshCA.load(step1).signer == MeshCA.load(old.read_text()).signer
    (tmp_path / "step1.pem").write_text(step1)
    # The second step may name the first step's text: a certificate already listed is not
    # listed again.
    status, step2, _ = run(capsys, "mesh-ca", "combine", str(fresh), str(tmp_path / "step1.pem"))
    assert subjects(step2) == ["CN=new,O=lambdamesh", "CN=old,O=lambdamesh"]
    status, step3, _ = run(capsys, "mesh-ca", "combine", str(fresh))
    assert subjects(step3) == ["CN=new,O=lambdamesh"]


def test_show_lists_the_certificates_and_never_the_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old, fresh = new(capsys, tmp_path, "old"), new(capsys, tmp_path, "new")
    _, both, _ = run(capsys, "mesh-ca", "combine", str(fresh), str(old))
    (tmp_path / "both.pem").write_text(both)
    status, out, _ = run(capsys, "mesh-ca", "show", str(tmp_path / "both.pem"))
    assert status == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["signs", "trusted"]
    assert "CN=new,O=lambdamesh" in lines[0] and "CN=old,O=lambdamesh" in lines[1]
    assert "PRIVATE" not in out
    key_line = both.splitlines()[1]
    assert key_line not in out


def test_what_the_registry_could_not_sign_with_is_refused_saying_why(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    paths = [new(capsys, tmp_path, f"ca{n}") for n in range(MAX_AUTHORITIES + 1)]
    status, out, err = run(capsys, "mesh-ca", "combine", *map(str, paths))
    assert (status, out) == (2, "")
    assert f"1 to {MAX_AUTHORITIES} CA certificates" in err

    certificate_only = tmp_path / "certificate-only.pem"
    text = paths[0].read_text()
    certificate_only.write_text(text[text.index("-----BEGIN CERTIFICATE") :])
    status, out, err = run(capsys, "mesh-ca", "show", str(certificate_only))
    assert (status, out) == (2, "")
    assert "exactly one private key" in err

    status, _, err = run(capsys, "mesh-ca", "show", str(tmp_path / "missing.pem"))
    assert status == 2 and "cannot read the CA text" in err
    status, _, err = run(capsys, "mesh-ca", "new", "--days", "0")
    assert status == 2 and "--days must be 1..3650" in err
