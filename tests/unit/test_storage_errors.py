"""How the store sorts DynamoDB's failures: 503 with Retry-After when waiting cures them, 500
when the operator must act. No DynamoDB here: the table connection is a fake that raises what
PynamoDB raises, a ``PutError`` whose cause is botocore's exception."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from pynamodb.connection import TableConnection
from pynamodb.exceptions import PutError

from chalicelib.config import Settings
from chalicelib.errors import RegistryMisconfigured, RegistryUnavailable
from chalicelib.instances import Registration
from chalicelib.storage import InstanceStore

NOW = 1_800_000_000.0
TABLE = "registry-of-the-account"


def client_error(code: str, status: int = 400) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"DynamoDB says {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutItem")


class FailingTable(TableConnection):
    """PynamoDB's TableConnection whose every write fails with ``cause`` (building one
    connects to nothing: its botocore client is made on first use)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(TABLE)
        self.cause = cause

    def put_item(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise PutError("Failed to put item", self.cause)


def register_with_failure(cause: Exception) -> RegistryUnavailable:
    settings = Settings.from_environ({"LAMBDAMESH_TABLE": TABLE})
    store = InstanceStore(settings, table=FailingTable(cause))
    registration = Registration(
        service="orders", instance_id="i-1", version="v1", host="h", port=80
    )
    with pytest.raises(RegistryUnavailable) as caught:
        store.register(registration, NOW)
    return caught.value


def cause_id(cause: Exception) -> str:
    return (
        str(cause.response["Error"]["Code"])
        if isinstance(cause, ClientError)
        else type(cause).__name__
    )


TRANSIENT = [
    client_error("ProvisionedThroughputExceededException"),
    client_error("ThrottlingException"),
    client_error("RequestLimitExceeded"),
    client_error("InternalServerError", 500),
    client_error("ServiceUnavailable", 503),
    client_error("SomethingNewAndBroken", 502),
    ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
    ConnectTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
    EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
]
PERMANENT = [
    client_error("ResourceNotFoundException"),
    client_error("AccessDeniedException"),
    client_error("UnrecognizedClientException"),
    client_error("ValidationException"),
    NoCredentialsError(),
]


@pytest.mark.parametrize("cause", TRANSIENT, ids=cause_id)
def test_throttling_5xx_and_no_answer_are_503_with_retry_after(cause: Exception) -> None:
    error = register_with_failure(cause)

    assert not isinstance(error, RegistryMisconfigured)
    assert (error.status, error.code) == (503, "registry_unavailable")
    assert error.retry_after == 2


@pytest.mark.parametrize("cause", PERMANENT, ids=cause_id)
def test_a_refusal_waiting_will_not_cure_is_a_500_without_retry_after(cause: Exception) -> None:
    error = register_with_failure(cause)

    assert isinstance(error, RegistryMisconfigured)
    assert (error.status, error.code) == (500, "registry_misconfigured")
    assert error.retry_after is None


@pytest.mark.parametrize("cause", [*TRANSIENT[:1], *PERMANENT[:1]], ids=["throttled", "missing"])
def test_the_caller_hears_nothing_of_the_table_or_dynamodb(cause: Exception) -> None:
    error = register_with_failure(cause)

    assert TABLE not in error.message
    assert "DynamoDB" not in error.message
    assert "Exception" not in error.message


def test_a_misconfiguration_is_logged_as_an_error_naming_dynamodbs_code_and_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="lambdamesh"):
        register_with_failure(client_error("AccessDeniedException"))

    [record] = [r for r in caplog.records if r.getMessage().startswith("registry write")]
    assert record.levelname == "ERROR"
    assert vars(record)["error_code"] == "AccessDeniedException"
    assert vars(record)["error_message"] == "DynamoDB says AccessDeniedException"


def test_throttling_is_logged_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="lambdamesh"):
        register_with_failure(client_error("ThrottlingException"))

    [record] = [r for r in caplog.records if r.getMessage().startswith("registry write")]
    assert record.levelname == "WARNING"
    assert vars(record)["error_code"] == "ThrottlingException"
