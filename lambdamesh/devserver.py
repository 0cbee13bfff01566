"""`lambdamesh dev`: the app behind a local API Gateway, with DynamoDB beside it, and on
request a second port in front of the same app shaped as a Lambda function URL.

DynamoDB is an embedded moto server on loopback unless an endpoint is named (DynamoDB Local,
LocalStack, or any compatible server). The app reads the same environment it reads on Lambda,
so the process sets that environment before importing it.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from lambdamesh.keys import DEV_SIGNING_KEY
from lambdamesh.localgateway import (
    LocalGatewayHandler,
    LocalGatewayServer,
    ProjectConfig,
    create_dev_server,
    create_url_server,
)

PROJECT_DIR = Path(__file__).resolve().parent.parent

DEV_DEFAULTS = {
    "LAMBDAMESH_ALLOW_LOOPBACK": "true",
    "LAMBDAMESH_ALLOW_PRIVATE": "false",
    "LAMBDAMESH_CACHE_SECONDS": "1",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "AWS_DEFAULT_REGION": "us-east-1",
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
    endpoint = dynamodb_endpoint or environ.get("AWS_ENDPOINT_URL_DYNAMODB") or None
    return endpoint, endpoint is None


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
    server: LocalGatewayServer | None = None
    url_server: LocalGatewayServer | None = None

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

        wiring.store().create_table()
        config = ProjectConfig.load(self.project_dir, self.stage)
        self.server = create_dev_server(
            module.app,
            self.host,
            self.port,
            handler_cls=DevRequestHandler,
            timeout_seconds=config.lambda_timeout,
        )
        _serve(self.server)
        if self.url_port is not None:
            self.url_server = create_url_server(
                module.app,
                self.host,
                self.url_port,
                handler_cls=DevRequestHandler,
                timeout_seconds=config.lambda_timeout,
            )
            _serve(self.url_server)
        return self.url

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def url_lane(self) -> str | None:
        """The function URL lane's address, when ``url_port`` asked for one."""
        return None if self.url_server is None else self.url_server.url

    def stop(self) -> None:
        for server in (self.url_server, self.server):
            if server is not None:
                server.shutdown()
                server.server_close()
        self.server = self.url_server = None
        self.dynamodb.stop()


def _serve(server: LocalGatewayServer) -> None:
    threading.Thread(target=server.serve_forever, daemon=True).start()
