"""Fakes shared by the sidecar tests: an HTTP registry, an ECS metadata endpoint, an app, a clock.

The HTTP fakes are real servers on loopback, so the client under test speaks real HTTP; the
in-memory fakes let the runner's loop run on a fake clock with no waiting at all.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lambdamesh_sidecar.client import Registration

SIDECAR_DIR = Path(__file__).resolve().parents[1]
# The repository: the image's build context, and the home of lambdamesh_routing.
ROOT = SIDECAR_DIR.parent
TOKEN = "s3cr3t-token-value"

CLUSTER_ARN = "arn:aws:ecs:us-east-1:123456789012:cluster/my-cluster"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/my-cluster/0123456789abcdef0123456789abcdef"

FARGATE_TASK_METADATA: dict[str, Any] = {
    "Cluster": CLUSTER_ARN,
    "TaskARN": TASK_ARN,
    "Family": "orders",
    "Revision": "7",
    "DesiredStatus": "RUNNING",
    "KnownStatus": "RUNNING",
    "Limits": {"CPU": 0.25, "Memory": 512},
    "PullStartedAt": "2024-05-01T10:00:01.12Z",
    "PullStoppedAt": "2024-05-01T10:00:09.57Z",
    "AvailabilityZone": "us-east-1a",
    "LaunchType": "FARGATE",
    "Containers": [
        {
            "DockerId": "0123456789abcdef0123456789abcdef-1111111111",
            "Name": "app",
            "DockerName": "app",
            "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/orders:1.4.2",
            "ImageID": "sha256:7d5e8a0b6c2f4e1d9a3b5c7e9f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c",
            "Labels": {
                "com.amazonaws.ecs.cluster": CLUSTER_ARN,
                "com.amazonaws.ecs.container-name": "app",
                "com.amazonaws.ecs.task-definition-family": "orders",
                "com.amazonaws.ecs.task-definition-version": "7",
            },
            "DesiredStatus": "RUNNING",
            "KnownStatus": "RUNNING",
            "Limits": {"CPU": 0},
            "CreatedAt": "2024-05-01T10:00:10.31Z",
            "StartedAt": "2024-05-01T10:00:10.87Z",
            "Type": "NORMAL",
            "ContainerARN": "arn:aws:ecs:us-east-1:123456789012:container/my-cluster/"
            "0123456789abcdef0123456789abcdef/2f1a5b3e-8c7d-4e6f-9a0b-1c2d3e4f5a6b",
            "LogDriver": "awslogs",
            "Networks": [
                {
                    "NetworkMode": "awsvpc",
                    "IPv4Addresses": ["10.0.1.23"],
                    "AttachmentIndex": 0,
                    "MACAddress": "0a:1b:2c:3d:4e:5f",
                    "IPv4SubnetCIDRBlock": "10.0.1.0/24",
                    "PrivateDNSName": "ip-10-0-1-23.ec2.internal",
                    "SubnetGatewayIpv4Address": "10.0.1.1/24",
                }
            ],
        },
        {
            "DockerId": "0123456789abcdef0123456789abcdef-2222222222",
            "Name": "lambdamesh-sidecar",
            "DockerName": "lambdamesh-sidecar",
            "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/lambdamesh-sidecar:0.1.0",
            "DesiredStatus": "RUNNING",
            "KnownStatus": "RUNNING",
            "Type": "NORMAL",
            "Networks": [
                {
                    "NetworkMode": "awsvpc",
                    "IPv4Addresses": ["10.0.1.23"],
                    "AttachmentIndex": 0,
                    "MACAddress": "0a:1b:2c:3d:4e:5f",
                    "IPv4SubnetCIDRBlock": "10.0.1.0/24",
                    "PrivateDNSName": "ip-10-0-1-23.ec2.internal",
                    "SubnetGatewayIpv4Address": "10.0.1.1/24",
                }
            ],
        },
    ],
    "ClockDrift": {
        "ClockErrorBound": 0.446931,
        "ReferenceTimestamp": "2024-05-01T10:00:00Z",
        "ClockSynchronizationStatus": "SYNCHRONIZED",
    },
    "EphemeralStorageMetrics": {"Utilized": 261, "Reserved": 20496},
}


def wait_for(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Polls until ``condition`` holds; a bounded wait, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------- in-memory fakes for the runner


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeStop:
    """A stop signal whose waits advance the fake clock instead of blocking.

    ``stop_when`` is asked after each wait, so a test says when the runner gets SIGTERM in
    terms of what has happened (e.g. "after the third heartbeat").
    """

    def __init__(self, clock: FakeClock, stop_when: Callable[[], bool] = lambda: False) -> None:
        self.clock = clock
        self.stop_when = stop_when
        self.waits: list[float | None] = []
        self._set = False
        self.max_waits = 10_000

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True

    def wait(self, timeout: float | None = None) -> bool:
        assert len(self.waits) < self.max_waits, "runner looped without stopping"
        self.waits.append(timeout)
        if not self._set:
            self.clock.now += timeout or 0.0
            self._set = self.stop_when()
        return self._set


class MaxRng:
    """Always draws the top of the range, so every backoff equals its ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


@dataclass(frozen=True)
class Call:
    name: str
    argument: Any
    at: float


class FakeRegistry:
    """Scripted registry: each queue holds the outcome of the next calls (None = success)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[Call] = []
        self.register_outcomes: deque[Exception | None] = deque()
        self.heartbeat_outcomes: deque[Exception | None] = deque()
        self.deregister_outcomes: deque[Exception | None] = deque()

    def _called(self, name: str, argument: Any, outcomes: deque[Exception | None]) -> None:
        self.calls.append(Call(name, argument, self.clock.now))
        outcome = outcomes.popleft() if outcomes else None
        if outcome is not None:
            raise outcome

    def register(self, registration: Registration) -> dict[str, Any]:
        self._called("register", registration, self.register_outcomes)
        return {"expires_at": 1234.5}

    def heartbeat(self, status: str) -> None:
        self._called("heartbeat", status, self.heartbeat_outcomes)

    def deregister(self, timeout: float | None = None) -> None:
        self._called("deregister", timeout, self.deregister_outcomes)

    def names(self) -> list[str]:
        return [call.name for call in self.calls]

    def count(self, name: str) -> int:
        return self.names().count(name)

    def of(self, name: str) -> list[Call]:
        return [call for call in self.calls if call.name == name]


# ---------------------------------------------------------------- HTTP fakes on loopback


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class RegistryState:
    token: str
    prefix: str
    requests: list[Recorded] = field(default_factory=list)
    instances: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    forced: deque[int] = field(default_factory=deque)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _RegistryHandler(BaseHTTPRequestHandler):
    server: _RegistryHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with state.lock:
            state.requests.append(Recorded(self.command, self.path, dict(self.headers), body))
            forced = state.forced.popleft() if state.forced else None
        if state.delay:
            time.sleep(state.delay)
        if forced is not None:
            self._answer(forced, _error(f"forced_{forced}", f"forced answer {forced}"))
            return
        if self.headers.get("Authorization") != f"Bearer {state.token}":
            self._answer(401, _error("unauthorized", "missing or invalid bearer token"))
            return
        self._route(state, body)

    def _route(self, state: RegistryState, body: Any) -> None:
        parts = self.path.removeprefix(state.prefix).strip("/").split("/")
        if len(parts) < 5 or parts[:2] != ["registry", "services"] or parts[3] != "instances":
            self._answer(404, _error("not_found", "no such route"))
            return
        key = (parts[2], parts[4])
        with state.lock:
            if self.command == "PUT" and len(parts) == 5:
                created = key not in state.instances
                state.instances[key] = {**body, "service": key[0], "instance_id": key[1]}
                stored = {**state.instances[key], "expires_at": time.time() + body["lease_seconds"]}
                self._answer(201 if created else 200, stored)
            elif self.command == "PUT" and parts[5:] == ["heartbeat"]:
                if key not in state.instances:
                    self._answer(404, _error("instance_not_found", "instance is not registered"))
                    return
                state.instances[key]["status"] = (body or {}).get("status", "UP")
                self._answer(200, state.instances[key])
            elif self.command == "DELETE" and len(parts) == 5:
                state.instances.pop(key, None)
                self._answer(204, None)
            else:
                self._answer(405, _error("method_not_allowed", "no"))

    def _answer(self, status: int, document: Any) -> None:
        payload = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class _RegistryHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: RegistryState) -> None:
        super().__init__(address, _RegistryHandler)
        self.state = state


class FakeRegistryServer:
    """The registry's HTTP contract, in memory, recording every request it gets."""

    def __init__(self, token: str = TOKEN, prefix: str = "", port: int = 0) -> None:
        self.state = RegistryState(token=token, prefix=prefix)
        self._server = _RegistryHTTPServer(("127.0.0.1", port), self.state)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.state.prefix}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, *statuses: int) -> None:
        with self.state.lock:
            self.state.forced.extend(statuses)

    def forget(self, service: str, instance_id: str) -> None:
        with self.state.lock:
            self.state.instances.pop((service, instance_id), None)

    def requests(self, method: str | None = None, suffix: str = "") -> list[Recorded]:
        with self.state.lock:
            return [
                request
                for request in self.state.requests
                if (method is None or request.method == method) and request.path.endswith(suffix)
            ]

    def instance(self, service: str, instance_id: str) -> dict[str, Any] | None:
        with self.state.lock:
            return self.state.instances.get((service, instance_id))


class _MetadataHandler(BaseHTTPRequestHandler):
    server: _MetadataHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        server.paths.append(self.path)
        if server.failures_left > 0 or self.path != "/v4/abc-123/task":
            server.failures_left -= 1
            self.send_response(500 if self.path.endswith("/task") else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = json.dumps(server.document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _MetadataHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, document: Mapping[str, Any], failures: int) -> None:
        super().__init__(("127.0.0.1", 0), _MetadataHandler)
        self.document = document
        self.failures_left = failures
        self.paths: list[str] = []


class FakeMetadataServer:
    """ECS task metadata endpoint v4: ``{uri}/task`` answers ``document`` after ``failures``."""

    def __init__(self, document: Mapping[str, Any], failures: int = 0) -> None:
        self._server = _MetadataHTTPServer(document, failures)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v4/abc-123"

    @property
    def paths(self) -> list[str]:
        return self._server.paths

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeApp:
    """A TCP listener standing in for the app container: accepts and hangs up."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self._socket.settimeout(0.05)
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def _serve(self) -> None:
        while self._running:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            connection.close()

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2)
        self._socket.close()


# ---------------------------------------------------------------- the sidecar as a process


def sidecar_env(registry_url: str, app_port: int, **overrides: str) -> dict[str, str]:
    """A clean environment: no proxy settings, no ECS variables, nothing from the test runner."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(SIDECAR_DIR), str(ROOT)]),
        "LAMBDAMESH_URL": registry_url,
        "LAMBDAMESH_TOKEN": TOKEN,
        "LAMBDAMESH_SERVICE": "orders",
        "LAMBDAMESH_VERSION": "v1",
        "LAMBDAMESH_HOST": "127.0.0.1",
        "LAMBDAMESH_PORT": str(app_port),
        "LAMBDAMESH_HEARTBEAT_SECONDS": "0.3",
        "LAMBDAMESH_LEASE_SECONDS": "5",
        "LAMBDAMESH_REQUEST_TIMEOUT_SECONDS": "2",
        "LAMBDAMESH_DRAIN_SECONDS": "0",
    }
    env.update(overrides)
    return env


class SidecarProcess:
    def __init__(self, env: Mapping[str, str], log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lambdamesh_sidecar", *args],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )

    def stderr(self) -> str:
        return self.log_path.read_text()

    def send(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 5.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"sidecar still running; its log:\n{self.stderr()}") from None
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        if self.process.stdout:
            self.process.stdout.close()
        self._log.close()


# ---------------------------------------------------------------- the image, without Docker

DOCKERFILE = SIDECAR_DIR / "Dockerfile"


@dataclass(frozen=True)
class Stage:
    """One ``FROM`` of the Dockerfile and the instructions up to the next one."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]]

    def arguments(self, op: str) -> list[str]:
        return [argument for name, argument in self.instructions if name == op]


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The Dockerfile's stages, continuation lines joined and comments dropped."""
    text = path.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    stages: list[Stage] = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        op, argument = line.split(None, 1)
        if op.upper() == "FROM":
            words = argument.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, []))
        else:
            stages[-1].instructions.append((op.upper(), argument))
    return stages


def copies(stage: Stage) -> list[tuple[str, str]]:
    """(source, destination) of each file or folder the stage copies from the build context."""
    found: list[tuple[str, str]] = []
    for argument in stage.arguments("COPY"):
        words = [word for word in argument.split() if not word.startswith("--")]
        if not any(word.startswith("--from=") for word in argument.split()):
            found.extend((source, words[-1]) for source in words[:-1])
    return found


def copied_sources(stage: Stage) -> list[str]:
    """What the stage's ``COPY`` instructions take from the build context (not ``--from``)."""
    return [source for source, _ in copies(stage)]


# The image's interpreter prefix, where the Dockerfile copies the packages and compiles them.
PREFIX = "/usr/local/"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


def _copy(origin: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if origin.is_dir():
        shutil.copytree(origin, target, ignore=_IGNORED, dirs_exist_ok=True)
    else:
        shutil.copy2(origin, target)


def install_like_the_image(root: Path) -> list[str]:
    """The Dockerfile's steps without Docker; returns its ENTRYPOINT, run by ``root``'s python.

    ``root`` plays the image's ``/usr/local``: an interpreter with nothing installed (a venv
    made ``--without-pip``), as the Dockerfile leaves the base once it has deleted the
    installers. What the Dockerfile copies under ``/usr/local/`` is copied under ``root`` as it
    is, then compiled by ``root``'s python as the Dockerfile compiles it.
    """
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)])
    stage = dockerfile_stages()[-1]
    [site_packages] = (root / "lib").glob("python3.*/site-packages")
    # The dependencies, installed by this interpreter's pip as the Dockerfile's pip installs
    # them (the same options, the same hashes), straight into the site-packages it moves them to.
    [install] = pip_install(stage)
    _run([sys.executable, "-m", "pip", *_local_paths(install, site_packages), "--quiet"])
    for source, destination in copies(stage):
        if not destination.startswith(PREFIX):
            continue  # the requirements file, read above from the checkout
        _copy(ROOT / source, root / _this_python(destination.removeprefix(PREFIX)))
    python = str(root / "bin" / "python")
    for folder in compiled_folders(stage):
        _run([python, "-m", "compileall", "-q", str(root / _this_python(folder))])
    return entrypoint(root)


def pip_install(stage: Stage) -> list[list[str]]:
    """The stage's ``pip install`` commands, as words after ``pip``."""
    found: list[list[str]] = []
    for run in stage.arguments("RUN"):
        for command in run.split("&&"):
            words = shlex.split(command)
            if words[:2] == ["pip", "install"]:
                found.append(words[1:])
    return found


def _local_paths(install: list[str], site_packages: Path) -> list[str]:
    """``install`` reading the checkout's requirements file and writing to ``site_packages``."""
    words = list(install)
    words[words.index("-r") + 1] = str(SIDECAR_DIR / "requirements.txt")
    words[words.index("--target") + 1] = str(site_packages)
    return words


def entrypoint(root: Path) -> list[str]:
    """The last stage's ENTRYPOINT, its program found in ``root``'s ``bin`` as the image's
    ``PATH`` finds it in ``/usr/local/bin``."""
    [program, *arguments] = json.loads(dockerfile_stages()[-1].arguments("ENTRYPOINT")[-1])
    found = shutil.which(program, path=str(root / "bin"))
    assert found, f"{program} is not in {root / 'bin'}"
    return [found, *arguments]


def _this_python(path: str) -> str:
    """A path of the image's prefix for this interpreter: the Dockerfile names its base's
    ``lib/python3.X`` folder, and the tests run on whichever Python the venv has."""
    here = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return re.sub(r"\bpython3\.\d+\b", here, path)


def compiled_folders(stage: Stage) -> list[str]:
    """What the stage's ``python -m compileall`` compiles in the image's prefix, relative to
    it."""
    folders: list[str] = []
    for run in stage.arguments("RUN"):
        for command in run.split("&&"):
            words = command.split()
            if words[:3] == ["python", "-m", "compileall"]:
                folders += [w.removeprefix(PREFIX) for w in words[3:] if w.startswith(PREFIX)]
    return folders


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}{result.stderr}"


# ---------------------------------------------------------------- PID 1 of a PID namespace


def child_pids(parent: int) -> list[int]:
    """Host pids whose parent is ``parent``, read from /proc/*/stat."""
    children: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == parent:
            children.append(int(stat.parent.name))
    return children


def _runs(pid: int, program: str, not_exe: str) -> bool:
    """Whether ``pid`` runs ``program`` (in its argv) from an executable other than ``not_exe``."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return program.encode() in argv and os.readlink(f"/proc/{pid}/exe") != not_exe
    except OSError:  # the process ended while we looked
        return False


def namespace_pids(pid: int) -> list[int]:
    """The ``NSpid`` line: the pid in each PID namespace, from ours to the innermost."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(value) for value in line.split()[1:]]
    raise AssertionError(f"no NSpid line for pid {pid}")


class Pid1Process:
    """``command`` as PID 1 of a new PID namespace, which is how a container runs its ENTRYPOINT.

    ``unshare --fork`` forks, and its child execs ``command`` as the namespace's PID 1; unshare
    itself only waits and passes the exit status on. ``pid`` is the host pid of that child: the
    process ECS signals. ``--kill-child`` makes sure it dies with unshare.
    """

    def __init__(self, command: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.unshare = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *command],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self.pid = self._exec_child(command[0])
        except BaseException:
            self.kill()
            raise

    def _exec_child(self, program: str) -> int:
        """Waits until unshare's child has exec'd (it no longer runs unshare) and returns it."""
        unshare_exe = os.readlink(f"/proc/{self.unshare.pid}/exe")
        found: list[int] = []

        def execd() -> bool:
            found[:] = [
                pid for pid in child_pids(self.unshare.pid) if _runs(pid, program, unshare_exe)
            ]
            return bool(found) or self.unshare.poll() is not None

        wait_for(execd, what="the namespace's first process to exec the command")
        assert found, f"unshare exited {self.unshare.returncode}:\n{self.output()}"
        return found[0]

    def output(self) -> str:
        return self.log_path.read_text()

    def send(self, signum: signal.Signals) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float = 5.0) -> int:
        try:
            return self.unshare.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running; its output:\n{self.output()}") from None

    def kill(self) -> None:
        if self.unshare.poll() is None:
            self.unshare.kill()
            self.unshare.wait(5)
        self._log.close()


# ---------------------------------------------------------------- a metadata endpoint that lags


class _HeldMetadataHandler(_MetadataHandler):
    server: _HeldMetadataHTTPServer

    def do_GET(self) -> None:
        self.server.arrived.set()
        self.server.released.wait(self.server.hold_seconds)
        super().do_GET()


class _HeldMetadataHTTPServer(_MetadataHTTPServer):
    def __init__(self, document: Mapping[str, Any], hold_seconds: float) -> None:
        ThreadingHTTPServer.__init__(self, ("127.0.0.1", 0), _HeldMetadataHandler)
        self.document = document
        self.failures_left = 0
        self.paths = []
        self.hold_seconds = hold_seconds
        self.arrived = threading.Event()
        self.released = threading.Event()


class HeldMetadataServer(FakeMetadataServer):
    """A metadata endpoint that lags: each answer waits for ``release()``, at most ``hold_seconds``.

    ``arrived()`` tells that a request is being held, i.e. that the sidecar is still loading its
    settings. Keep ``hold_seconds`` under the client's timeout (2 s) so a held request still
    succeeds, as a slow endpoint's would.
    """

    def __init__(self, document: Mapping[str, Any], hold_seconds: float = 1.5) -> None:
        self._held = _HeldMetadataHTTPServer(document, hold_seconds)
        self._server = self._held
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def arrived(self) -> bool:
        return self._held.arrived.is_set()

    def release(self) -> None:
        self._held.released.set()
