"""Eureka's REST API against callers that do not play fair: other services' tokens, names and
addresses chosen to slip past a check, bodies built to break a parser or inflate every
client's answer. Each refusal is a 4xx with a stable code, and stores nothing."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import pytest

from lambdamesh.testclient import TestClient as Client
from tests.functional.conftest import body_json
from tests.functional.test_eureka_api import (
    PY_ID,
    PY_PATH,
    applications,
    basic,
    instances,
    py_auth,
    py_body,
    register,
)
from tests.helpers import admin_token, bearer, service_token

XML_HEADERS = {"Content-Type": "application/xml"}


def xml_body(extra: str = "", instance_id: str = "x-1", head: str = "") -> str:
    return (
        f"{head}<instance><instanceId>{instance_id}</instanceId><hostName>h.example</hostName>"
        "<app>PYORDERS</app><ipAddr>127.0.0.1</ipAddr><status>UP</status>"
        '<port enabled="true">8080</port><dataCenterInfo><name>MyOwn</name></dataCenterInfo>'
        f"{extra}</instance>"
    )


def post(client: Client, body: bytes | str, headers: dict[str, str], app: str = "PYORDERS") -> Any:
    return client.http.post(f"/eureka/apps/{app}", headers=headers, body=body)


def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.body
    error: dict[str, Any] = body_json(response)["error"]
    assert error["code"] == code
    return error


def stored(client: Client, service: str = "pyorders") -> list[dict[str, Any]]:
    answer = client.http.get(
        f"/registry/services/{service}/instances", headers=bearer(admin_token())
    )
    found: list[dict[str, Any]] = body_json(answer)["instances"]
    return found


# App names: one spelling per service ------------------------------------------------------


@pytest.mark.parametrize(
    "app",
    [
        "PYORDER\u212a",  # KELVIN SIGN, which lower-cases to an ASCII "k"
        " PYORDERK",
        "PYORDERK ",
    ],
    ids=["kelvin-sign", "leading-space", "trailing-space"],
)
def test_an_app_name_that_only_folds_into_a_service_name_is_refused(
    client: Client, app: str
) -> None:
    headers = {"Content-Type": "application/json", **basic(service_token("pyorderk"))}
    body = json.dumps(py_body(app=app))

    response = post(client, body, headers, app=app)

    refused(response, 400, "invalid_request")
    assert applications(client)["application"] == []


# Who may write is decided before the body is read -----------------------------------------


@pytest.mark.parametrize(
    "body",
    ["not a registration", "x" * (17 * 1024)],
    ids=["malformed", "oversized"],
)
def test_another_services_token_learns_nothing_about_its_body(client: Client, body: str) -> None:
    headers = {"Content-Type": "application/json", **basic(service_token("payments"))}

    response = post(client, body, headers)

    refused(response, 403, "forbidden")


def test_another_services_metadata_update_is_forbidden_before_its_parameters_are_read(
    client: Client,
) -> None:
    register(client, py_body())
    flood = "&".join(f"k{n}=v" for n in range(40))

    response = client.http.put(
        f"{PY_PATH}/metadata?{flood}", headers=basic(service_token("payments"))
    )

    refused(response, 403, "forbidden")


# Addresses Eureka clients connect to ------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"hostName": "169.254.169.254"},
        {"hostName": "[fd00:ec2::254]"},
        {"hostName": "169.254.169.254:80/latest/meta-data#"},
        {"hostName": "ho\u0000st.example"},
        {"ipAddr": "2852039166", "hostName": "pyorders.example"},
        {"ipAddr": "0xa9.0xfe.0xa9.0xfe", "hostName": "pyorders.example"},
    ],
    ids=[
        "metadata-host-name",
        "ec2-ipv6-metadata-host-name",
        "url-in-host-name",
        "nul-in-host-name",
        "decimal-ipv4",
        "hex-ipv4",
    ],
)
def test_every_address_a_eureka_client_may_connect_to_passes_the_address_checks(
    client: Client, fields: dict[str, Any]
) -> None:
    """Eureka's consumers connect to ``hostName`` (py-eureka-client's and Spring's default)
    or ``ipAddr``: whichever the gateway does not use must not aim them at their own
    metadata service either."""
    response = register(client, py_body(**fields))

    assert response.status_code == 400, response.body
    assert body_json(response)["error"]["code"] in ("host_not_allowed", "invalid_request")
    assert applications(client)["application"] == []


def test_a_host_name_beside_an_ip_address_is_kept_as_given(client: Client) -> None:
    response = register(client, py_body(hostName="PyOrders-1.Internal"))

    assert response.status_code == 204, response.body
    assert instances(applications(client))[PY_ID]["hostName"] == "PyOrders-1.Internal"


# What one registration may add to every client's answer -----------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"homePageUrl": "&" * 15_000},
        {"vipAddress": "'" * 5_000, "secureVipAddress": "'" * 5_000},
        {
            "dataCenterInfo": {
                "name": "Amazon",
                "metadata": {f"k{n}": "v" * 100 for n in range(100)},
            }
        },
    ],
    ids=["url", "vip-addresses", "data-centre-metadata"],
)
def test_a_record_larger_than_eurekas_clients_need_is_refused(
    client: Client, fields: dict[str, Any]
) -> None:
    response = register(client, py_body(**fields))

    error = refused(response, 413, "payload_too_large")
    assert "8192" in error["message"]
    assert applications(client)["application"] == []


def test_a_metadata_update_cannot_grow_a_record_past_the_limit(client: Client) -> None:
    """Within the registry's own metadata limits (3 KB as JSON), but six times that as XML."""
    register(client, py_body())
    values = "&".join(f"k{n}={'%27' * 500}" for n in range(6))

    response = client.http.put(f"{PY_PATH}/metadata?{values}", headers=py_auth())

    error = refused(response, 413, "payload_too_large")
    assert "8192" in error["message"]
    assert "k0" not in instances(applications(client))[PY_ID]["metadata"]


# Refusals quote at most a little of what was sent -----------------------------------------


@pytest.mark.parametrize(
    "fields",
    [{"app": "X" * 5_000}, {"dataCenterInfo": {"name": "Y" * 5_000}}],
    ids=["app", "data-centre"],
)
def test_a_refusal_does_not_echo_a_long_value(client: Client, fields: dict[str, Any]) -> None:
    response = register(client, py_body(**fields))

    error = refused(response, 400, "invalid_request")
    assert len(error["message"]) < 300


# XML --------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["UTF-7", "UTF-32", "no-such-encoding"])
def test_an_xml_declaration_naming_an_encoding_expat_cannot_read_is_refused(
    client: Client, encoding: str
) -> None:
    body = xml_body(head=f'<?xml version="1.0" encoding="{encoding}"?>')

    response = post(client, body, {**XML_HEADERS, **py_auth()})

    refused(response, 400, "invalid_request")
    assert applications(client)["application"] == []


def test_an_xml_body_in_utf_16_is_read(client: Client) -> None:
    body = xml_body(head='<?xml version="1.0" encoding="UTF-16"?>').encode("utf-16")

    response = post(client, body, {**XML_HEADERS, **py_auth()})

    assert response.status_code == 204, response.body
    assert "x-1" in instances(applications(client))


@pytest.mark.parametrize(
    "body",
    [
        xml_body("<ipAddr>127.0.0.2</ipAddr>"),
        xml_body("<metadata><k>1</k><k>2</k></metadata>"),
        xml_body(
            "<leaseInfo><durationInSecs>30</durationInSecs><durationInSecs>60</durationInSecs></leaseInfo>"
        ),
    ],
    ids=["instance-field", "metadata-key", "lease-field"],
)
def test_an_xml_field_given_twice_is_refused_as_a_json_key_given_twice_is(
    client: Client, body: str
) -> None:
    response = post(client, body, {**XML_HEADERS, **py_auth()})

    error = refused(response, 400, "invalid_request")
    assert "twice" in error["message"]
    assert applications(client)["application"] == []


# Metadata updates change metadata only ----------------------------------------------------


def test_a_metadata_update_keeps_the_status_a_drained_instance_reported(client: Client) -> None:
    register(client, py_body(status="DOWN"))
    admin = basic(admin_token())
    client.http.put(f"{PY_PATH}/status?value=OUT_OF_SERVICE", headers=admin)

    updated = client.http.put(f"{PY_PATH}/metadata?team=a", headers=py_auth())
    client.http.delete(f"{PY_PATH}/status", headers=admin)

    assert updated.status_code == 200, updated.body
    listed = instances(applications(client))[PY_ID]
    assert (listed["status"], listed["metadata"]["team"]) == ("DOWN", "a")
    assert [i["status"] for i in stored(client)] == ["DOWN"]


def test_a_metadata_update_keeps_what_a_sidecar_registered(client: Client) -> None:
    registration = {
        "version": "v1",
        "host": "127.0.0.1",
        "port": 8080,
        "weight": 7,
        "zone": "z1",
        "task_arn": "arn:aws:ecs:us-east-1:123456789012:task/main/abc",
        "tls": True,
    }
    client.http.put(
        "/registry/services/orders/instances/task-1",
        headers={"Content-Type": "application/json", **bearer(service_token("orders"))},
        body=json.dumps(registration),
    )

    updated = client.http.put(
        "/eureka/apps/ORDERS/task-1/metadata?team=a", headers=basic(service_token("orders"))
    )

    assert updated.status_code == 200, updated.body
    (instance,) = stored(client, "orders")
    assert instance["metadata"]["team"] == "a"
    assert (instance["weight"], instance["zone"], instance["task_arn"], instance["tls"]) == (
        7,
        "z1",
        registration["task_arn"],
        True,
    )


# Credentials ------------------------------------------------------------------------------


def basic_header(credentials: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials).decode()}


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic"},
        {"Authorization": "Basic !!not-base64!!"},
        basic_header(b"no-colon-at-all"),
        basic_header(b"user:"),
        basic_header(service_token("pyorders").encode() + b":"),
        basic_header("\u00fc:\u00f6".encode()),
        basic_header(b"\xff\xfe:\xff"),
        {"Authorization": "Basic " + "QUFB" * 5_000},
        {"Authorization": "Token " + service_token("pyorders")},
    ],
    ids=[
        "no-credentials",
        "not-base64",
        "no-colon",
        "empty-password",
        "token-as-user",
        "unicode",
        "not-utf-8",
        "very-long",
        "other-scheme",
    ],
)
def test_credentials_a_token_cannot_be_read_from_answer_401_asking_for_basic(
    client: Client, headers: dict[str, str]
) -> None:
    response = client.http.post(
        "/eureka/apps/PYORDERS",
        headers={"Content-Type": "application/json", **headers},
        body=json.dumps(py_body()),
    )

    refused(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == 'Basic realm="lambdamesh"'
    assert service_token("pyorders") not in str(response.body)
    assert applications(client)["application"] == []


# Renews and metadata: bad input loses nothing ---------------------------------------------


@pytest.mark.parametrize("dirty", ["-1", "99999999999999999999", "\u0663", "1e3"])
def test_a_renew_with_a_timestamp_that_is_no_epoch_milliseconds_is_refused(
    client: Client, dirty: str
) -> None:
    register(client, py_body())

    response = client.http.put(f"{PY_PATH}?lastDirtyTimestamp={quote(dirty)}", headers=py_auth())

    refused(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "query",
    ["a%3Cb=x", f"x={'v' * 513}", "version=NOT%20A%20VERSION"],
    ids=["key-no-xml-name", "value-too-long", "bad-version"],
)
def test_a_metadata_update_the_registry_would_refuse_changes_nothing(
    client: Client, query: str
) -> None:
    register(client, py_body())
    before = instances(applications(client))[PY_ID]

    response = client.http.put(f"{PY_PATH}/metadata?{query}", headers=py_auth())

    assert response.status_code == 400, response.body
    assert instances(applications(client))[PY_ID]["metadata"] == before["metadata"]
