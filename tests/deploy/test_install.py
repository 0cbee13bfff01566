"""`pip install lambdamesh` as a user does it: a wheel built from the tracked files alone,
installed into a fresh venv, run from a directory outside the checkout.

The plain install must give a working operator CLI with neither Chalice nor moto; adding the
`local` extra must give a working `lambdamesh dev --demo`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chalicelib.auth import verify
from tests.deploy.conftest import ROOT

# Building and installing into fresh venvs downloads packages on a machine with a cold cache.
pytestmark = pytest.mark.timeout(600)

KEY = "install-test-signing-key-0123456789"
PIP_TIMEOUT = 600
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]


@dataclass
class Installed:
    venv: Path
    wheel: Path
    home: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL"))}
        return {**base, "PATH": f"{self.venv / 'bin'}:{base.get('PATH', '')}", **extra}

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.bin("lambdamesh"), *args],
            cwd=self.home,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def pip(self, *args: str) -> None:
        subprocess.run(
            [self.bin("python"), "-m", "pip", "install", "-q", *args],
            cwd=self.home,
            env=self.env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
            check=True,
            capture_output=True,
            timeout=PIP_TIMEOUT,
        )

    def importable(self, module: str) -> bool:
        probe = (
            f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
        )
        code = subprocess.run(
            [self.bin("python"), "-c", probe], cwd=self.home, env=self.env(), timeout=60
        ).returncode
        return code == 0


def tracked_copy(destination: Path) -> Path:
    """The checkout as a clone has it: tracked and new files, nothing built or ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("install")
    source = tracked_copy(work / "source")
    dist = work / "dist"
    subprocess.run(
        [*PIP_WHEEL, "-w", str(dist), str(source)],
        check=True,
        capture_output=True,
        timeout=PIP_TIMEOUT,
    )
    [wheel] = dist.glob("lambdamesh-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True, timeout=120)
    home = work / "elsewhere"
    home.mkdir()
    result = Installed(venv=work / "venv", wheel=wheel, home=home)
    result.pip(str(wheel))
    yield result


def test_the_plain_install_has_neither_chalice_nor_moto(installed: Installed) -> None:
    assert not installed.importable("chalice")
    assert not installed.importable("moto")
    assert installed.importable("boto3")


def test_version_prints_the_installed_version(installed: Installed) -> None:
    answer = installed.run("--version")

    assert answer.returncode == 0
    assert answer.stdout.strip() == "lambdamesh 0.1.0"


@pytest.mark.parametrize(
    "command",
    [["lambdamesh-sidecar"], ["python", "-m", "lambdamesh_sidecar"]],
    ids=["command", "module"],
)
def test_the_plain_install_runs_the_sidecar(installed: Installed, command: list[str]) -> None:
    """This distribution is the sidecar's one owner: `lambdamesh dev --demo` runs it with
    `python -m`, and the sidecar image takes the same two folders."""
    answer = subprocess.run(
        [installed.bin(command[0]), *command[1:], "--version"],
        cwd=installed.home,
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "lambdamesh-sidecar 0.1.0"


def test_the_operator_commands_work_from_the_plain_install(installed: Installed) -> None:
    """Against a port nothing listens on: each parses, builds its request and says why it
    failed in one line with the unreachable exit code, without chalice or moto."""
    where = {"LAMBDAMESH_URL": "http://127.0.0.1:9", "LAMBDAMESH_TOKEN": "t"}
    for command in (
        ["services"],
        ["instances", "orders", "--version", "v1"],
        ["deregister", "orders", "task-1"],
        ["policy", "show", "orders"],
        ["drain", "orders", "task-1"],
    ):
        answer = installed.run(*command, **where)

        assert answer.returncode == 5, (command, answer.stderr)
        assert answer.stderr.startswith("lambdamesh: cannot reach http://127.0.0.1:9")


def test_token_works_without_chalice(installed: Installed) -> None:
    answer = installed.run("token", "orders", LAMBDAMESH_SIGNING_KEY=KEY)

    assert answer.returncode == 0, answer.stderr
    assert verify(KEY.encode(), answer.stdout.strip()).scope == "service:orders"


def test_token_reads_the_key_from_a_secret(installed: Installed, moto_endpoint: str) -> None:
    import boto3

    name = f"lambdamesh/install-{os.getpid()}/signing-key"
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint)
    secrets.create_secret(Name=name, SecretString=f"{KEY},old-signing-key-0123456789")

    answer = installed.run(
        "token", "--admin", "--signing-key-secret", name, AWS_ENDPOINT_URL=moto_endpoint
    )

    assert answer.returncode == 0, answer.stderr
    assert verify(KEY.encode(), answer.stdout.strip()).is_admin


def test_bootstrap_creates_the_table_without_chalice(
    installed: Installed, moto_endpoint: str
) -> None:
    table = f"install-registry-{os.getpid()}"

    first = installed.run(
        "bootstrap", AWS_ENDPOINT_URL_DYNAMODB=moto_endpoint, LAMBDAMESH_TABLE=table
    )
    again = installed.run(
        "bootstrap", AWS_ENDPOINT_URL_DYNAMODB=moto_endpoint, LAMBDAMESH_TABLE=table
    )

    assert (first.returncode, first.stdout.strip()) == (0, f"table {table} created")
    assert (again.returncode, again.stdout.strip()) == (0, f"table {table} already exists")


def test_configure_and_check_work_from_the_plain_install(installed: Installed) -> None:
    project = installed.home / "project"
    shutil.copytree(ROOT / ".chalice", project / ".chalice")
    outputs = project / "outputs.json"
    outputs.write_text(
        json.dumps(
            {
                "SubnetIds": "subnet-0a,subnet-0b",
                "SecurityGroupIds": "sg-0lambda",
                "AllowedNetworks": "10.0.0.0/20,10.0.16.0/20",
            }
        )
    )

    before = installed.run("check", "--stage", "prod", "--project-dir", str(project))
    configured = installed.run(
        "configure", "--stage", "prod", "--outputs", str(outputs), "--project-dir", str(project)
    )
    after = installed.run("check", "--stage", "prod", "--project-dir", str(project))

    assert before.returncode == 2
    assert "LAMBDAMESH_ALLOWED_NETWORKS" in before.stderr
    assert configured.returncode == 0, configured.stderr
    assert (after.returncode, after.stdout.strip()) == (0, "stage prod is ready to deploy")


def test_dev_without_the_local_extra_names_the_extra_in_one_line(installed: Installed) -> None:
    answer = installed.run("dev")

    assert answer.returncode == 2
    assert answer.stderr.strip().splitlines() == [
        "lambdamesh: `lambdamesh dev` needs chalice, moto: pip install 'lambdamesh[local]'"
    ]


def test_the_local_extra_gives_a_working_demo(installed: Installed) -> None:
    installed.pip(f"lambdamesh[local] @ {installed.wheel.as_uri()}")
    demo = subprocess.Popen(
        [installed.bin("lambdamesh"), "dev", "--demo", "--port", "0"],
        cwd=installed.home,
        env=installed.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = read_until(demo, "Press Ctrl-C to stop")
        url = re.search(r"ready on (http://\S+)", "".join(lines))
        assert url, lines
        assert any("curl" in line for line in lines)
        with urllib.request.urlopen(f"{url[1]}/api/v1/hello/v1/greet/world", timeout=10) as r:
            assert r.status == 200
            assert json.load(r)["instance"] in {"hello-0", "hello-1"}
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()


def read_until(process: subprocess.Popen[str], marker: str, limit: int = 200) -> list[str]:
    """Lines up to ``marker``; the module's timeout bounds a demo that never gets there."""
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if marker in line or len(lines) >= limit:
            return lines
    raise AssertionError(f"the demo exited before {marker!r}: {''.join(lines)}")
