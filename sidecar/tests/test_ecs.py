"""ECS task metadata v4: parsing a realistic Fargate document, and reading it over loopback HTTP."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
from sidecar_testkit import FARGATE_TASK_METADATA, FakeMetadataServer, free_port

from lambdamesh_sidecar.config import load
from lambdamesh_sidecar.ecs import (
    MetadataUnavailable,
    TaskMetadata,
    TaskMetadataClient,
    fetch_task_metadata,
    parse_task,
)


@pytest.fixture
def metadata_server() -> Iterator[FakeMetadataServer]:
    server = FakeMetadataServer(FARGATE_TASK_METADATA)
    yield server
    server.close()


def test_fargate_document_gives_address_task_and_zone() -> None:
    task = parse_task(FARGATE_TASK_METADATA)

    assert task == TaskMetadata(
        task_arn="arn:aws:ecs:us-east-1:123456789012:task/my-cluster/0123456789abcdef0123456789abcdef",
        network_mode="awsvpc",
        ipv4="10.0.1.23",
        availability_zone="us-east-1a",
    )
    assert task.task_id == "0123456789abcdef0123456789abcdef"


def test_bridge_mode_gives_no_routable_address() -> None:
    document = copy.deepcopy(FARGATE_TASK_METADATA)
    for container in document["Containers"]:
        container["Networks"] = [{"NetworkMode": "bridge", "IPv4Addresses": ["172.17.0.2"]}]

    task = parse_task(document)

    assert (task.network_mode, task.ipv4) == ("bridge", None)


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"Containers": "nope"},
        {"Containers": [{"Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": []}]}]},
        {"Containers": [{"Name": "no-networks"}], "TaskARN": 5},
    ],
)
def test_sparse_documents_leave_fields_unknown(document: dict[str, object]) -> None:
    task = parse_task(document)

    assert task.ipv4 is None
    assert task.task_id is None


def test_a_document_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(MetadataUnavailable):
        parse_task(["not", "a", "task"])


def test_task_is_read_from_the_task_path_of_the_endpoint(
    metadata_server: FakeMetadataServer,
) -> None:
    task = fetch_task_metadata(metadata_server.uri + "/")

    assert metadata_server.paths == ["/v4/abc-123/task"]
    assert task.ipv4 == "10.0.1.23"


def test_transient_failures_are_retried() -> None:
    server = FakeMetadataServer(FARGATE_TASK_METADATA, failures=2)
    slept: list[float] = []
    try:
        task = TaskMetadataClient(sleep=slept.append).task(server.uri)
    finally:
        server.close()

    assert task.availability_zone == "us-east-1a"
    assert len(server.paths) == 3
    assert slept == [0.5, 1.0]


def test_gives_up_after_the_last_attempt() -> None:
    slept: list[float] = []
    client = TaskMetadataClient(sleep=slept.append, timeout=0.5, attempts=3)

    with pytest.raises(MetadataUnavailable, match="after 3 attempts"):
        client.task(f"http://127.0.0.1:{free_port()}/v4/abc-123")

    assert len(slept) == 2


def test_non_http_uri_is_refused_without_retrying() -> None:
    slept: list[float] = []

    with pytest.raises(MetadataUnavailable):
        TaskMetadataClient(sleep=slept.append).task("file:///etc/passwd")

    assert slept == []


def test_settings_derive_from_the_metadata_endpoint(metadata_server: FakeMetadataServer) -> None:
    settings = load(
        {
            "LAMBDAMESH_URL": "https://registry.example",
            "LAMBDAMESH_TOKEN": "t",
            "LAMBDAMESH_SERVICE": "orders",
            "LAMBDAMESH_VERSION": "v1",
            "LAMBDAMESH_PORT": "8080",
            "ECS_CONTAINER_METADATA_URI_V4": metadata_server.uri,
        }
    )

    assert settings.host == "10.0.1.23"
    assert settings.instance_id == "0123456789abcdef0123456789abcdef"
    assert settings.zone == "us-east-1a"
