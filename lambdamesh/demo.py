"""`lambdamesh dev --demo`: two services, two instances each, a real sidecar beside each."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

from chalicelib.auth import issue
from lambdamesh.processes import Supervisor

DEMO_SERVICES = (("hello", "v1"), ("echo", "v1"))
INSTANCES_PER_SERVICE = 2
# hello's sidecars serve an outbound port, through which the hello app calls echo.
CALLERS = frozenset({"hello"})
# How the demo's services face the internet: public, declared as any public service must be.
PUBLIC = {"exposed": True, "auth": ["none"]}
# How they face each other: mutual TLS only, through each task's inbound port, and only the
# callers their intentions name (the gateway, for the public; hello, for echo).
POLICIES: dict[str, dict[str, object]] = {
    "hello": {
        "mtls": "strict",
        "intentions": {"default": "deny", "rules": [{"from": "_gateway", "action": "allow"}]},
    },
    "echo": {
        "mtls": "strict",
        "intentions": {
            "default": "deny",
            "rules": [
                {"from": "_gateway", "action": "allow"},
                {"from": "hello", "action": "allow", "methods": ["GET", "HEAD"]},
            ],
        },
    },
}
# Each demo instance stands for an ECS task, named as ECS names one, so that the stop event
# ECS would send for it (`lambdamesh task-event --stopped ARN`) removes it.
DEMO_TASK_ARN = "arn:aws:ecs:us-east-1:000000000000:task/lambdamesh-demo/{task_id}"


def demo_task_arn(instance: str) -> str:
    """A stable, made-up task ARN for a demo instance (32 hex digits, like ECS's task ids)."""
    return DEMO_TASK_ARN.format(task_id=hashlib.sha256(instance.encode()).hexdigest()[:32])


# Ports the demo's processes listen on are chosen below Linux's ephemeral range (32768-60999
# by default), where the kernel picks the local ports of outgoing connections and of bind(0):
# a port chosen there and freed may be taken by a connection before its server binds it.
DEMO_PORTS = range(20000, 32000)
_PORT_TRIES = 200


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, outside the ephemeral range."""
    for port in random.sample(DEMO_PORTS, _PORT_TRIES):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:  # every try taken: let the kernel pick one
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class Demo:
    url: str
    signing_key: bytes
    supervisor: Supervisor
    heartbeat_seconds: str = "2"
    lease_seconds: str = "6"
    outbound_ports: dict[str, int] = field(default_factory=dict)
    inbound_ports: dict[str, int] = field(default_factory=dict)
    # Each instance's "task": its app's and its sidecar's process ids.
    task_pids: dict[str, tuple[int, int]] = field(default_factory=dict)
    # The console's URL: the dashboard never shares the gateway's origin.
    console: str | None = None

    def start(self) -> None:
        for service in dict(DEMO_SERVICES):
            self.expose(service, PUBLIC)
            self._put(f"/registry/services/{service}/policy", POLICIES[service])
        for service, version in DEMO_SERVICES:
            for index in range(INSTANCES_PER_SERVICE):
                self._start_instance(service, version, index)

    def _start_instance(self, service: str, version: str, index: int) -> None:
        port = free_port()
        app = ["-m", "lambdamesh.demo_app", "--port", str(port), "--name", service]
        app += ["--instance", f"{service}-{index}"]
        env = dict(self.sidecar_env(service, version, port, index))
        inbound = self.inbound_ports[f"{service}-{index}"] = free_port()
        env["LAMBDAMESH_INBOUND_PORT"] = str(inbound)
        if service in CALLERS:
            outbound = free_port()
            self.outbound_ports[f"{service}-{index}"] = outbound
            app += ["--outbound", f"http://127.0.0.1:{outbound}"]
            env["LAMBDAMESH_OUTBOUND_PORT"] = str(outbound)
            env["LAMBDAMESH_OUTBOUND_ALLOW_LOOPBACK"] = "true"
        started = self.supervisor.start(f"{service}-app-{index}", app)
        sidecar = ["-m", "lambdamesh_sidecar"]
        beside = self.supervisor.start(f"{service}-sidecar-{index}", sidecar, env=env)
        self.task_pids[f"{service}-{index}"] = (started.pid, beside.pid)

    def sidecar_env(self, service: str, version: str, port: int, index: int) -> Mapping[str, str]:
        return {
            "LAMBDAMESH_URL": self.url,
            "LAMBDAMESH_TOKEN": issue(self.signing_key, service=service),
            "LAMBDAMESH_SERVICE": service,
            "LAMBDAMESH_VERSION": version,
            "LAMBDAMESH_HOST": "127.0.0.1",
            "LAMBDAMESH_PORT": str(port),
            "LAMBDAMESH_INSTANCE_ID": f"{service}-{index}",
            "LAMBDAMESH_TASK_ARN": demo_task_arn(f"{service}-{index}"),
            "LAMBDAMESH_HEARTBEAT_SECONDS": self.heartbeat_seconds,
            "LAMBDAMESH_LEASE_SECONDS": self.lease_seconds,
            "LAMBDAMESH_METADATA": '{"demo": "true"}',
            # On Ctrl-C: DRAINING for one instance-cache period, then deregistered.
            "LAMBDAMESH_DRAIN_SECONDS": "1",
            "LAMBDAMESH_LOG_LEVEL": "WARNING",
        }

    def expose(self, service: str, exposure: Mapping[str, object]) -> None:
        """Declare how the gateway serves ``service``: nothing is public undeclared."""
        self._put(f"/registry/services/{service}/exposure", exposure)

    def _put(self, path: str, document: Mapping[str, object]) -> None:
        """An admin's PUT of a document to the registry API."""
        request = urllib.request.Request(  # noqa: S310 - our own http URL
            f"{self.url}{path}",
            data=json.dumps(document).encode(),
            method="PUT",
            headers={
                "Authorization": f"Bearer {issue(self.signing_key)}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - our own URL
            pass

    def wait_until_registered(self, timeout: float = 30.0) -> bool:
        """True once every demo instance is live in the registry, so the printed lines work."""
        expected = INSTANCES_PER_SERVICE * len(DEMO_SERVICES)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._live_instances() >= expected:
                return True
            time.sleep(0.2)
        return False

    def _live_instances(self) -> int:
        request = urllib.request.Request(  # noqa: S310 - our own http URL
            f"{self.url}/registry/services",
            headers={"Authorization": f"Bearer {issue(self.signing_key)}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - our URL
                services = json.load(response)["services"]
        except OSError:
            return 0
        return sum(int(service["live"]) for service in services)

    def instructions(self) -> str:
        admin = issue(self.signing_key)
        auth = f'-H "Authorization: Bearer {admin}"'
        return "\n".join(
            [
                "Try:",
                f"  curl -s '{self.url}/health'",
                f"  curl -s {auth} '{self.url}/registry/services'",
                f"  curl -s {auth} '{self.url}/registry/services/hello/instances'",
                f"  curl -s '{self.url}/api/v1/hello/v1/greet/world?lang=en'",
                f"  curl -s -X POST --data-binary 'ping' '{self.url}/api/v1/echo/v1/echo'",
                f"  curl -s -i '{self.url}/api/v1/nope/v1/'",
                "hello calls echo through its sidecar's outbound port (no gateway on the way),",
                "over mutual TLS: echo's app sees who called in X-Forwarded-Client-Cert:",
                f"  curl -s '{self.url}/api/v1/hello/v1/call/echo/v1/items/7'",
                f"  curl -s 'http://127.0.0.1:{self.outbound_ports.get('hello-0', 0)}"
                "/echo/v1/items/8'   # as the hello-0 app calls it",
                "Both services are strict: their tasks' inbound ports refuse a caller without a",
                "mesh certificate (403 mtls_required), and echo's intentions let hello GET only:",
                f"  curl -s 'http://127.0.0.1:{self.inbound_ports.get('echo-0', 0)}/items/9'",
                f"  curl -s -X POST '{self.url}/api/v1/hello/v1/call/echo/v1/items/9'",
                *self._crash(auth),
                f"Tokens: export LAMBDAMESH_SIGNING_KEY={self.signing_key.decode()}"
                " and run `lambdamesh token SERVICE` or `lambdamesh token --admin`.",
                *self._dashboard(admin),
            ]
        )

    def _crash(self, auth: str) -> list[str]:
        """How to crash a task, and have ECS's stop event take it out of rotation at once."""
        pids = self.task_pids.get("hello-1")
        if pids is None:
            return []
        return [
            "Crash the hello-1 task (app and sidecar, no deregistration), then hand the app",
            "the stop event ECS would send; hello-1 leaves at once, not when its lease lapses:",
            f"  kill -9 {pids[0]} {pids[1]}",
            f"  lambdamesh task-event --url {self.url} --stopped {demo_task_arn('hello-1')}",
            f"  curl -s {auth} '{self.url}/registry/services/hello/instances'",
        ]

    def _dashboard(self, admin: str) -> list[str]:
        if self.console is None:
            return ["No dashboard: the console is off (LAMBDAMESH_CONSOLE_DOMAIN)."]
        return [f"Dashboard: {self.console}/dashboard (sign in with the admin token: {admin})"]
