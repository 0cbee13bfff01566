"""Eureka's REST API through the app (both front doors), against moto's DynamoDB: the bodies
are the ones real clients sent (py-eureka-client 0.13.3, eureka-js-client 4.5.0, Spring
Cloud's serializer)."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ElementTree
from typing import Any

import pytest

from lambdamesh.testclient import TestClient as Client
from tests.functional.conftest import Upstream, body_json
from tests.helpers import admin_token, bearer, service_token

PY_ID = "127.0.0.1:pyorders:8080"
PY_PATH = "/eureka/apps/PYORDERS/127.0.0.1%3Apyorders%3A8080"
JSON_ACCEPT = {"Accept": "application/json"}


def py_body(number: int = 8080, **changes: Any) -> dict[str, Any]:
    """What py-eureka-client 0.13.3 registers (captured), for app pyorders."""
    instance = {
        "instanceId": PY_ID,
        "hostName": "localhost",
        "app": "PYORDERS",
        "ipAddr": "127.0.0.1",
        "port": {"$": number, "@enabled": "true"},
        "securePort": {"$": 9443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": {
            "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
            "name": "MyOwn",
        },
        "leaseInfo": {
            "renewalIntervalInSecs": 30,
            "durationInSecs": 90,
            "registrationTimestamp": 0,
            "lastRenewalTimestamp": 0,
            "evictionTimestamp": 0,
            "serviceUpTimestamp": 0,
        },
        "metadata": {"management.port": str(number), "zone": "default"},
        "homePageUrl": f"http://localhost:{number}/",
        "statusPageUrl": f"http://localhost:{number}/info",
        "healthCheckUrl": f"http://localhost:{number}/health",
        "secureHealthCheckUrl": "",
        "vipAddress": "pyorders",
        "secureVipAddress": "pyorders",
        "isCoordinatingDiscoveryServer": "false",
        "status": "UP",
        "overriddenstatus": "UNKNOWN",
        "lastUpdatedTimestamp": "1796445645568",
        "lastDirtyTimestamp": "1796445645568",
    }
    instance.update(changes)
    return {"instance": instance}


JS_BODY = {
    "instance": {
        "app": "jsorders",
        "hostName": "localhost",
        "ipAddr": "127.0.0.1",
        "port": {"$": 3000, "@enabled": True},
        "vipAddress": "jsorders",
        "dataCenterInfo": {
            "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
            "name": "MyOwn",
        },
        "status": "UP",
    }
}


def basic(token: str, user: str = "svc") -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{token}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def py_auth() -> dict[str, str]:
    return basic(service_token("pyorders"))


def register(client: Client, body: Any, app: str = "PYORDERS", token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json", **basic(token or service_token(app.lower()))}
    return client.http.post(f"/eureka/apps/{app}", headers=headers, body=json.dumps(body))


def applications(client: Client, token: str | None = None) -> dict[str, Any]:
    headers = {**JSON_ACCEPT, **basic(token or admin_token())}
    response = client.http.get("/eureka/apps/", headers=headers)
    assert response.status_code == 200, response.body
    assert response.headers["Content-Type"] == "application/json"
    document: dict[str, Any] = body_json(response)["applications"]
    return document


def delta(client: Client) -> dict[str, Any]:
    response = client.http.get("/eureka/apps/delta", headers={**JSON_ACCEPT, **py_auth()})
    assert response.status_code == 200, response.body
    document: dict[str, Any] = body_json(response)["applications"]
    return document


def instances(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        instance["instanceId"]: instance
        for app in document["application"]
        for instance in app["instance"]
    }


def test_a_py_eureka_client_registration_answers_204_and_is_listed(client: Client) -> None:
    response = register(client, py_body())

    assert response.status_code == 204
    assert response.body in (b"", "")
    listed = instances(applications(client))[PY_ID]
    assert listed["app"] == "PYORDERS"
    assert listed["status"] == "UP"
    assert listed["port"] == {"$": 8080, "@enabled": "true"}
    assert listed["securePort"] == {"$": 9443, "@enabled": "false"}
    assert listed["vipAddress"] == "pyorders"
    assert listed["homePageUrl"] == "http://localhost:8080/"
    assert listed["metadata"]["management.port"] == "8080"
    assert listed["leaseInfo"]["durationInSecs"] == 90


def test_the_registry_names_a_eureka_instance_by_a_folded_id(client: Client) -> None:
    register(client, py_body())

    native = client.http.get("/registry/services/pyorders/instances", headers=bearer(admin_token()))

    (stored,) = body_json(native)["instances"]
    assert stored["instance_id"].startswith("127.0.0.1-pyorders-8080-")
    assert stored["version"] == "v1"
    assert (stored["host"], stored["port"]) == ("127.0.0.1", 8080)
    assert stored["lease_seconds"] == 90
    assert stored["tls"] is False  # a Eureka client's port is no sidecar's inbound port


def test_eureka_js_clients_lower_case_app_and_v2_path_are_taken(client: Client) -> None:
    headers = {"Content-Type": "application/json", **basic(service_token("jsorders"))}
    response = client.http.post(
        "/eureka/v2/apps/jsorders", headers=headers, body=json.dumps(JS_BODY)
    )

    assert response.status_code == 204
    listed = instances(applications(client))["localhost"]
    assert listed["app"] == "JSORDERS"
    assert listed["port"]["$"] == 3000


def test_renew_answers_200_empty_and_404_for_an_unknown_instance(client: Client) -> None:
    register(client, py_body())

    renewed = client.http.put(
        f"{PY_PATH}?status=UP&lastDirtyTimestamp=1796445645568", headers=py_auth()
    )
    unknown = client.http.put("/eureka/apps/PYORDERS/nobody", headers=py_auth())

    assert renewed.status_code == 200
    assert renewed.body in (b"", "")
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("dirty", "status"), [(1796445645567, 200), (1796445645568, 200), (1796445645569, 404)]
)
def test_a_renew_with_newer_data_than_stored_answers_404_so_the_client_registers(
    client: Client, dirty: int, status: int
) -> None:
    register(client, py_body())

    renewed = client.http.put(f"{PY_PATH}?lastDirtyTimestamp={dirty}", headers=py_auth())

    assert renewed.status_code == status


def test_a_renew_with_a_malformed_timestamp_is_refused(client: Client) -> None:
    register(client, py_body())

    renewed = client.http.put(f"{PY_PATH}?lastDirtyTimestamp=soon", headers=py_auth())

    assert renewed.status_code == 400
    assert body_json(renewed)["error"]["code"] == "invalid_request"


def test_cancel_answers_200_then_404(client: Client) -> None:
    register(client, py_body())

    first = client.http.delete(PY_PATH, headers=py_auth())
    second = client.http.delete(PY_PATH, headers=py_auth())

    assert (first.status_code, second.status_code) == (200, 404)
    assert PY_ID not in instances(applications(client))


def test_without_credentials_the_answer_is_401_asking_for_basic(client: Client) -> None:
    response = client.http.post(
        "/eureka/apps/PYORDERS",
        headers={"Content-Type": "application/json"},
        body=json.dumps(py_body()),
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="lambdamesh"'
    assert applications(client)["application"] == []


def test_another_services_token_may_not_register_as_this_app(client: Client) -> None:
    response = register(client, py_body(), token=service_token("payments"))

    assert response.status_code == 403
    assert applications(client)["application"] == []


def test_a_bearer_token_is_taken_as_on_the_native_api(client: Client) -> None:
    headers = {"Content-Type": "application/json", **bearer(service_token("pyorders"))}
    response = client.http.post(
        "/eureka/apps/PYORDERS", headers=headers, body=json.dumps(py_body())
    )

    assert response.status_code == 204


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "body"),
        (json.dumps(py_body(hostName="")), "hostname"),
        (json.dumps(py_body(app="OTHER")), "Mismatched appName"),
        (json.dumps(py_body(port={"$": 8080, "@enabled": "false"})), "port must be enabled"),
        (json.dumps(py_body(ipAddr="169.254.169.254")), "169.254.169.254"),
        (json.dumps(py_body(metadata={"version": "NOT A VERSION"})), "version"),
    ],
    ids=["not-json", "no-hostname", "other-app", "port-disabled", "metadata-address", "version"],
)
def test_a_bad_registration_is_refused_with_400_and_stores_nothing(
    client: Client, body: str, message: str
) -> None:
    register(client, py_body())
    before = applications(client)

    headers = {"Content-Type": "application/json", **py_auth()}
    response = client.http.post("/eureka/apps/PYORDERS", headers=headers, body=body)

    assert response.status_code == 400
    error = body_json(response)["error"]
    assert message.lower() in error["message"].lower()
    assert applications(client)["application"] == before["application"]


def test_an_app_name_that_cannot_be_a_service_is_refused(client: Client) -> None:
    body = py_body(app="MY_APP")
    headers = {"Content-Type": "application/json", **basic(admin_token())}
    response = client.http.post("/eureka/apps/MY_APP", headers=headers, body=json.dumps(body))

    assert response.status_code == 400
    assert "service" in body_json(response)["error"]["message"]


def test_a_eureka_instance_is_routed_through_the_gateway(client: Client, upstreams: Any) -> None:
    upstream: Upstream = upstreams("pyorders")
    register(client, py_body(upstream.port))

    routed = client.http.get("/api/v1/pyorders/v1/hello")

    assert routed.status_code == 200
    assert body_json(routed)["instance"] == str(upstream.port)


def test_a_sidecar_registration_appears_to_eureka_clients(client: Client) -> None:
    body = {"version": "2.1.0", "host": "127.0.0.1", "port": 8080}
    client.http.put(
        "/registry/services/orders/instances/task-1",
        headers={"Content-Type": "application/json", **bearer(service_token("orders"))},
        body=json.dumps(body),
    )

    listed = instances(applications(client, token=service_token("pyorders")))["task-1"]

    assert listed["app"] == "ORDERS"
    assert (listed["hostName"], listed["ipAddr"]) == ("127.0.0.1", "127.0.0.1")
    assert listed["vipAddress"] == "orders"
    assert listed["metadata"]["version"] == "2.1.0"
    assert listed["dataCenterInfo"]["name"] == "MyOwn"


def test_an_out_of_service_override_is_the_operators_drain(client: Client, upstreams: Any) -> None:
    upstream: Upstream = upstreams("pyorders")
    register(client, py_body(upstream.port))

    refused = client.http.put(f"{PY_PATH}/status?value=OUT_OF_SERVICE", headers=py_auth())
    admin = basic(admin_token())
    overridden = client.http.put(f"{PY_PATH}/status?value=OUT_OF_SERVICE", headers=admin)
    client.http.put(PY_PATH, headers=py_auth())  # a renew cannot undo it
    listed = instances(applications(client))[PY_ID]
    routed = client.http.get("/api/v1/pyorders/v1/hello")

    assert refused.status_code == 403
    assert overridden.status_code == 200
    assert (listed["status"], listed["overriddenStatus"]) == ("OUT_OF_SERVICE", "OUT_OF_SERVICE")
    assert routed.status_code == 503

    lifted = client.http.delete(f"{PY_PATH}/status", headers=admin)

    assert lifted.status_code == 200
    assert instances(applications(client))[PY_ID]["status"] == "UP"
    assert client.http.get("/api/v1/pyorders/v1/hello").status_code == 200


def test_an_override_other_than_out_of_service_is_refused(client: Client) -> None:
    register(client, py_body())

    response = client.http.put(f"{PY_PATH}/status?value=STARTING", headers=basic(admin_token()))

    assert response.status_code == 400
    assert instances(applications(client))[PY_ID]["status"] == "UP"


def test_metadata_is_updated_by_query_parameters(client: Client) -> None:
    register(client, py_body())

    response = client.http.put(f"{PY_PATH}/metadata?team=payments&tier=1", headers=py_auth())

    assert response.status_code == 200
    metadata = instances(applications(client))[PY_ID]["metadata"]
    assert (metadata["team"], metadata["tier"], metadata["management.port"]) == (
        "payments",
        "1",
        "8080",
    )


def test_one_app_one_instance_and_a_vip_are_read(client: Client) -> None:
    register(client, py_body())
    headers = {**JSON_ACCEPT, **py_auth()}

    app = client.http.get("/eureka/apps/pyorders", headers=headers)
    one = client.http.get(PY_PATH, headers=headers)
    anywhere = client.http.get("/eureka/instances/127.0.0.1%3Apyorders%3A8080", headers=headers)
    vip = client.http.get("/eureka/vips/pyorders", headers=headers)
    missing = client.http.get("/eureka/apps/nothing", headers=headers)

    assert body_json(app)["application"]["name"] == "PYORDERS"
    assert body_json(one)["instance"]["instanceId"] == PY_ID
    assert body_json(anywhere)["instance"]["instanceId"] == PY_ID
    assert body_json(vip)["applications"]["versions__delta"] == "-1"
    assert [a["name"] for a in body_json(vip)["applications"]["application"]] == ["PYORDERS"]
    assert missing.status_code == 404


def test_without_accept_json_the_registry_is_xml(client: Client) -> None:
    register(client, py_body())

    response = client.http.get("/eureka/apps/", headers=py_auth())

    assert response.headers["Content-Type"] == "application/xml"
    root = ElementTree.fromstring(response.body)
    assert root.tag == "applications"
    assert root.findtext("application/instance/instanceId") == PY_ID
    assert root.find("application/instance/port").attrib["enabled"] == "true"  # type: ignore[union-attr]


def test_the_full_registry_carries_eurekas_hash_code(client: Client) -> None:
    register(client, py_body())
    register(client, JS_BODY, app="JSORDERS")
    client.http.put(f"{PY_PATH}/status?value=OUT_OF_SERVICE", headers=basic(admin_token()))

    document = applications(client)

    assert document["versions__delta"] == "1"
    assert document["apps__hashcode"] == "OUT_OF_SERVICE_1_UP_1_"


def test_the_delta_holds_what_changed_and_the_full_registrys_hash(client: Client) -> None:
    empty_delta = delta(client)
    register(client, py_body())
    added = delta(client)
    client.http.delete(PY_PATH, headers=py_auth())
    deleted = delta(client)

    assert empty_delta["application"] == []
    assert instances(added)[PY_ID]["actionType"] == "ADDED"
    assert added["apps__hashcode"] == "UP_1_"
    gone = instances(deleted)[PY_ID]
    assert gone["actionType"] == "DELETED"
    assert (gone["hostName"], gone["port"]["$"], gone["vipAddress"]) == (
        "localhost",
        8080,
        "pyorders",
    )
    assert gone["leaseInfo"]["evictionTimestamp"] > 0
    assert deleted["apps__hashcode"] == ""
    versions = {
        empty_delta["versions__delta"],
        added["versions__delta"],
        deleted["versions__delta"],
    }
    assert len(versions) == 3 and not versions & {"1", "-1"}


def test_an_unchanged_delta_keeps_its_version(client: Client) -> None:
    register(client, py_body())

    assert delta(client)["versions__delta"] == delta(client)["versions__delta"]


def test_a_drain_is_a_modified_entry_in_the_delta(client: Client) -> None:
    register(client, py_body())
    client.http.put(f"{PY_PATH}/status?value=OUT_OF_SERVICE", headers=basic(admin_token()))

    entry = instances(delta(client))[PY_ID]

    assert (entry["actionType"], entry["status"]) == ("MODIFIED", "OUT_OF_SERVICE")


XML_BODY = b"""<instance>
  <instanceId>xmlorders-1</instanceId>
  <hostName>xmlorders.internal</hostName>
  <app>XMLORDERS</app>
  <ipAddr>127.0.0.1</ipAddr>
  <status>UP</status>
  <port enabled="true">8081</port>
  <securePort enabled="false">443</securePort>
  <dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo">
    <name>MyOwn</name>
  </dataCenterInfo>
  <leaseInfo><durationInSecs>30</durationInSecs></leaseInfo>
  <metadata><team__name>stock</team__name></metadata>
  <vipAddress>xmlorders</vipAddress>
</instance>"""


def test_an_xml_registration_is_taken_and_read_back_in_xml(client: Client) -> None:
    headers = {"Content-Type": "application/xml", **basic(service_token("xmlorders"))}
    response = client.http.post("/eureka/apps/XMLORDERS", headers=headers, body=XML_BODY)

    assert response.status_code == 204
    listed = client.http.get("/eureka/apps/XMLORDERS", headers=basic(admin_token()))
    root = ElementTree.fromstring(listed.body)
    assert root.tag == "application"
    assert root.findtext("instance/instanceId") == "xmlorders-1"
    assert root.findtext("instance/metadata/team__name") == "stock"
    assert instances(applications(client))["xmlorders-1"]["metadata"]["team_name"] == "stock"


def test_a_registration_over_the_body_limit_answers_413_and_stores_nothing(
    client: Client,
) -> None:
    body = py_body(metadata={"pad": "x" * (16 * 1024)})

    response = register(client, body)

    assert response.status_code == 413
    assert applications(client)["application"] == []
