"""What the ECS task metadata endpoint (v4) says about the task this sidecar runs in.

The registry needs an address other tasks can reach. In ``awsvpc`` mode (every Fargate task)
that is the task's ENI address, which only the metadata endpoint knows; the task ARN gives a
stable, unique instance id for free. The endpoint is link-local and plain HTTP, so it is read
with ``http.client`` directly: an ``HTTP_PROXY`` meant for the registry must never apply here.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# Network modes whose container address is reachable from outside the task's host.
ROUTABLE_NETWORK_MODES = ("awsvpc", "host")
_MAX_DOCUMENT_BYTES = 1024 * 1024

Getter = Callable[[str, float], bytes]
Sleep = Callable[[float], None]


class MetadataUnavailable(Exception):
    """The endpoint could not be read or did not describe a task."""


@dataclass(frozen=True)
class TaskMetadata:
    task_arn: str | None = None
    network_mode: str | None = None
    ipv4: str | None = None
    availability_zone: str | None = None

    @property
    def task_id(self) -> str | None:
        """Last ``/`` segment of the ARN: unique per task and stable across sidecar restarts."""
        if not self.task_arn:
            return None
        return self.task_arn.rsplit("/", 1)[-1] or None


def http_get(url: str, timeout: float) -> bytes:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise MetadataUnavailable(f"not an http:// URL: {url[:200]!r}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read(_MAX_DOCUMENT_BYTES)
    finally:
        connection.close()
    if response.status != 200:
        raise MetadataUnavailable(f"HTTP {response.status} from {path}")
    return body


class TaskMetadataClient:
    """Reads ``${ECS_CONTAINER_METADATA_URI_V4}/task`` with a timeout and a few quick retries.

    The endpoint can lag a moment behind container start, so a failure is retried before the
    sidecar gives up; giving up is final because without an address there is nothing to register.
    """

    def __init__(
        self,
        get: Getter = http_get,
        sleep: Sleep = time.sleep,
        timeout: float = 2.0,
        attempts: int = 3,
        retry_delay: float = 0.5,
    ) -> None:
        self._get = get
        self._sleep = sleep
        self._timeout = timeout
        self._attempts = attempts
        self._retry_delay = retry_delay

    def task(self, base_uri: str) -> TaskMetadata:
        if urlsplit(base_uri).scheme != "http":
            raise MetadataUnavailable(f"not an http:// URL: {base_uri[:200]!r}")
        url = base_uri.rstrip("/") + "/task"
        failure = "no attempt made"
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(self._retry_delay * attempt)
            try:
                return parse_task(json.loads(self._get(url, self._timeout)))
            except (OSError, http.client.HTTPException, ValueError, MetadataUnavailable) as exc:
                failure = f"{type(exc).__name__}: {exc}"
        raise MetadataUnavailable(f"{url} failed after {self._attempts} attempts ({failure})")


def fetch_task_metadata(base_uri: str) -> TaskMetadata:
    return TaskMetadataClient().task(base_uri)


def parse_task(document: Any) -> TaskMetadata:
    if not isinstance(document, dict):
        raise MetadataUnavailable("task metadata is not a JSON object")
    mode, ipv4 = _routable_address(_networks(document.get("Containers")))
    return TaskMetadata(
        task_arn=_text(document.get("TaskARN")),
        network_mode=mode,
        ipv4=ipv4,
        availability_zone=_text(document.get("AvailabilityZone")),
    )


def _networks(containers: Any) -> Iterator[dict[str, Any]]:
    for container in containers if isinstance(containers, list) else []:
        networks = container.get("Networks") if isinstance(container, dict) else None
        for network in networks if isinstance(networks, list) else []:
            if isinstance(network, dict):
                yield network


def _routable_address(networks: Iterator[dict[str, Any]]) -> tuple[str | None, str | None]:
    """First network's mode, and its first IPv4 address if other tasks can reach it.

    In ``awsvpc`` mode every container shares the task's ENI, so the first network is the
    task's; a ``bridge`` address is private to the EC2 host and must not be registered.
    """
    first_mode: str | None = None
    for network in networks:
        mode = _text(network.get("NetworkMode"))
        first_mode = first_mode or mode
        addresses = network.get("IPv4Addresses")
        if mode in ROUTABLE_NETWORK_MODES and isinstance(addresses, list) and addresses:
            return mode, _text(addresses[0])
    return first_mode, None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
