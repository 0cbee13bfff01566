"""`lambdamesh dev`: the app behind a local API Gateway, with DynamoDB beside it; the console
(the dashboard) on a port of its own, as a deployed console has a domain of its own; and on
request another port in front of the same app shaped as a Lambda function URL.

DynamoDB is an embedded moto server on loopback unless an endpoint is named (DynamoDB Local,
LocalStack, or any compatible server). The app reads the same environment it reads on Lambda,
so the process sets that environment before importing it.
"""

from __future__ import annotations

import datetime
import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from lambdamesh.events import Stage
from lambdamesh.invocations import Invocations
from lambdamesh.keys import DEV_SIGNING_KEY
from lambdamesh.localgateway import (
    LocalGatewayHandler,
    LocalGatewayServer,
    create_dev_server,
    create_url_server,
)
from lambdamesh.projectconfig import ProjectConfig

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The console's listener stands in for the console's own custom domain: API Gateway reports a
# custom domain's name in every event, whatever port the client used.
DEV_CONSOLE_DOMAIN = "console.localhost"
# And the gateway's listener for the execute-api URL: its events name that domain whatever
# Host a client sends, so no Host header turns the gateway's port into the console.
DEV_GATEWAY_DOMAIN = "local.execute-api.localhost"

DEV_DEFAULTS = {
    "LAMBDAMESH_ALLOW_LOOPBACK": "true",
    "LAMBDAMESH_ALLOW_PRIVATE": "false",
    "LAMBDAMESH_CACHE_SECONDS": "1",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "AWS_DEFAULT_REGION": "us-east-1",
    "LAMBDAMESH_CONSOLE_DOMAIN": DEV_CONSOLE_DOMAIN,
}
# moto accepts any credentials; these keep botocore from looking for real ones.
MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class DevRequestHandler(LocalGatewayHandler):
    """Logs each request on stderr, except successful heartbeats: a few sidecars would
    otherwise scroll everything else away."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if str(code).startswith("2") and self.path.endswith("/heartbeat"):
            return
        super().log_request(code, size)


@dataclass
class EmbeddedDynamoDB:
    """moto's server, a real HTTP endpoint, on a free loopback port in this process."""

    host: str = "127.0.0.1"
    server: Any = None

    def start(self) -> str:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address=self.host, port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def prepare_environment(
    environ: MutableMapping[str, str], dynamodb_endpoint: str | None
) -> tuple[str | None, bool]:
    """Fill in development defaults; return the endpoint to use and whether to embed moto."""
    for name, value in DEV_DEFAULTS.items():
        environ.setdefault(name, value)
    environ.setdefault("LAMBDAMESH_SIGNING_KEY", DEV_SIGNING_KEY)
    if not environ.get("LAMBDAMESH_MESH_CA") and not environ.get("LAMBDAMESH_MESH_CA_SECRET"):
        environ["LAMBDAMESH_MESH_CA"] = dev_mesh_ca()
    endpoint = dynamodb_endpoint or environ.get("AWS_ENDPOINT_URL_DYNAMODB") or None
    return endpoint, endpoint is None


def dev_mesh_ca() -> str:
    """A mesh CA made at start, so that no two runs trust each other's certificates: the dev
    server issues service certificates as a deployed stage does."""
    from chalicelib.mesh_ca import new_authority

    now = datetime.datetime.now(datetime.UTC)
    return new_authority("lambdamesh dev mesh CA", now, datetime.timedelta(days=7))


def load_app(project_dir: Path) -> ModuleType:
    """Import the project's app.py as Chalice would, after the environment is set."""
    if str(project_dir) not in sys.path:
        sys.path.insert(0, str(project_dir))
    from chalicelib import wiring

    wiring.reset()
    return importlib.import_module("app")


@dataclass
class DevServer:
    host: str = "127.0.0.1"
    port: int = 8000
    project_dir: Path = PROJECT_DIR
    dynamodb_endpoint: str | None = None
    environ: MutableMapping[str, str] = field(default_factory=lambda: os.environ)
    dynamodb: EmbeddedDynamoDB = field(default_factory=EmbeddedDynamoDB)
    stage: str = "dev"
    url_port: int | None = None
    console_port: int | None = None
    server: LocalGatewayServer | None = None
    url_server: LocalGatewayServer | None = None
    console_server: LocalGatewayServer | None = None

    def start(self) -> str:
        endpoint, embed = prepare_environment(self.environ, self.dynamodb_endpoint)
        if embed:
            for name, value in MOTO_CREDENTIALS.items():
                self.environ.setdefault(name, value)
            endpoint = self.dynamodb.start()
        assert endpoint is not None
        self.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
        module = load_app(self.project_dir)
        from chalicelib import wiring

        store = wiring.store()
        if not store.create_table() and not store.has_task_index():
            from chalicelib.storage import missing_task_index_advice

            print(missing_task_index_advice(wiring.settings().table_name), file=sys.stderr)
        config = ProjectConfig.load(self.project_dir, self.stage)
        gateway = _root_stage(module, DEV_GATEWAY_DOMAIN)
        self.server = self._listen(create_dev_server, module, config, self.port, stage=gateway)
        # EventBridge's way in (ECS task state changes): Lambda's Invoke API on the same port.
        self.server.invoke = Invocations(module.app, self.server.invoke, config.lambda_timeout)
        if self.url_port is not None:
            self.url_server = self._listen(create_url_server, module, config, self.url_port)
        self._start_console(module, config)
        return self.url

    def _start_console(self, module: ModuleType, config: ProjectConfig) -> None:
        """The console's listener: the same app, its events naming the console's domain, so
        the app serves the dashboard there and the gateway's routes everywhere else. With
        the console on the function URL lane (``function-url``), that lane is the console."""
        domain = self.environ.get("LAMBDAMESH_CONSOLE_DOMAIN", "")
        if self.console_port is None or domain in ("", "function-url"):
            return
        self.console_server = self._listen(
            create_dev_server, module, config, self.console_port, stage=_root_stage(module, domain)
        )

    def _listen(
        self,
        create: Callable[..., LocalGatewayServer],
        module: ModuleType,
        config: ProjectConfig,
        port: int,
        **options: Any,
    ) -> LocalGatewayServer:
        """A listener serving in the background; an OSError names the address it wanted."""
        try:
            server = create(
                module.app,
                self.host,
                port,
                handler_cls=DevRequestHandler,
                timeout_seconds=config.lambda_timeout,
                **options,
            )
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, f"{self.host}:{port}") from None
        _serve(server)
        return server

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def url_lane(self) -> str | None:
        """The function URL lane's address, when ``url_port`` asked for one."""
        return None if self.url_server is None else self.url_server.url

    @property
    def console(self) -> str | None:
        """Where the dashboard is: the console's listener, or the function URL lane when the
        console is there."""
        if self.console_server is not None:
            return self.console_server.url
        if self.environ.get("LAMBDAMESH_CONSOLE_DOMAIN") == "function-url":
            return self.url_lane
        return None

    def stop(self) -> None:
        for server in (self.console_server, self.url_server, self.server):
            if server is not None:
                server.shutdown()
                server.server_close()
        self.server = self.url_server = self.console_server = None
        self.dynamodb.stop()


def _root_stage(module: ModuleType, domain: str) -> Stage:
    """Served at the root, as a custom domain with no base path, its events naming ``domain``."""
    return Stage(binary_types=tuple(module.app.api.binary_types), url_prefix="", domain_name=domain)


def _serve(server: LocalGatewayServer) -> None:
    threading.Thread(target=server.serve_forever, daemon=True).start()
