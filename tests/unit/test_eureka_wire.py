"""Eureka's wire formats (``chalicelib.eureka.wire``) held to Eureka's codecs and to the clients.

``fixtures/eureka/*.json|xml``, the ``*_register.json`` files apart, are what Eureka's own
codecs (``EurekaJacksonCodec`` and ``XmlXStream``, Netflix/eureka 61acc83d) write for the
records built below. ``py_register.json`` and ``js_register.json`` are the register bodies
py-eureka-client 0.13.3 and eureka-js-client 4.5.0 sent; ``spring_register.json`` is what
Spring Cloud's client serializer writes for a registration.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import py_eureka_client.eureka_basic as eureka_basic
import py_eureka_client.http_client as eureka_http
import pytest

from chalicelib.errors import InvalidRequest, PayloadTooLarge
from chalicelib.eureka.records import (
    Application,
    Applications,
    DataCenter,
    DataCenterName,
    EurekaInstance,
    EurekaStatus,
    LeaseInfo,
    Port,
)
from chalicelib.eureka.wire import (
    JSON_CONTENT_TYPE,
    XML_CONTENT_TYPE,
    Format,
    media_type,
    parse_registration,
    render_application,
    render_applications,
    render_instance,
    wants_json,
)
from chalicelib.validation import MAX_REGISTRY_BODY

FIXTURES = Path(__file__).parent / "fixtures" / "eureka"
NOW_MS = 1_800_000_000_000
FORMATS: tuple[Format, ...] = ("json", "xml")
DEFAULT_CLASS = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
AMAZON_CLASS = "com.netflix.appinfo.AmazonInfo"
EMPTY_MAP = "java.util.Collections$EmptyMap"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def made(
    app: str,
    instance_id: str,
    host: str,
    port: int,
    status: EurekaStatus,
    metadata: dict[str, str],
    **fields: Any,
) -> EurekaInstance:
    """An instance as the fixtures' generator built them (its URLs and times)."""
    lease = LeaseInfo(30, 90, 1700000000000, 1700000090000, 0, 1700000000100)
    base = f"http://{host}:{port}/"
    values: dict[str, Any] = {
        "lease": lease,
        "home_page_url": base,
        "status_page_url": f"{base}info",
        "health_check_url": f"{base}health",
        "vip_address": app.lower(),
        "secure_vip_address": app.lower(),
        "last_updated_ms": 1700000000200,
        "last_dirty_ms": 1699999999000,
        **fields,
    }
    return EurekaInstance(
        instance_id=instance_id,
        app=app,
        host_name=host,
        ip_addr="10.0.0.5",
        port=Port(port, enabled=True),
        status=status,
        metadata=metadata,
        **values,
    )


ORDERS_1 = made(
    "ORDERS",
    "10.0.0.5:orders:8080",
    "orders-1.local",
    8080,
    "UP",
    {"management.port": "8080", "zone": "default"},
    action_type="ADDED",
)
ORDERS_2 = made(
    "ORDERS",
    "10.0.0.6:orders:8080",
    "orders-2.local",
    8080,
    "OUT_OF_SERVICE",
    {},
    overridden_status="OUT_OF_SERVICE",
    action_type="MODIFIED",
)
AMAZON = DataCenter(
    "Amazon",
    {"instance-id": "i-0abc", "local-ipv4": "10.1.2.3", "availability-zone": "us-east-1c"},
)
PAYMENTS_1 = made(
    "PAYMENTS",
    "i-0abc",
    "ip-10-1-2-3.ec2.internal",
    9000,
    "DOWN",
    {},
    data_center=AMAZON,
    action_type="DELETED",
)
ORDERS = Application("ORDERS", (ORDERS_1, ORDERS_2))
REGISTRY = Applications(
    "1", "DOWN_1_OUT_OF_SERVICE_1_UP_1_", (ORDERS, Application("PAYMENTS", (PAYMENTS_1,)))
)
EMPTY = Applications("7", "", ())
PY_DELETED = made(
    "PYORDERS",
    "127.0.0.1:pyorders:8080",
    "localhost",
    8080,
    "DOWN",
    {"management.port": "8080"},
    lease=LeaseInfo(30, 90, 1700000100000, 1700000190000, 1700000120000, 1700000000100),
    action_type="DELETED",
)
JS_ADDED = made("JSORDERS", "localhost", "localhost", 3000, "UP", {}, action_type="ADDED")
DELTA = Applications(
    "17",
    "UP_3_",
    (Application("PYORDERS", (PY_DELETED,)), Application("JSORDERS", (JS_ADDED,))),
)
# Metadata keys XStream escapes, values XML escapes, an empty secure health URL (as
# py-eureka-client registers it), the Netflix data centre.
TRICKY = made(
    "TRICKY",
    "tricky-1",
    "tricky.local",
    8080,
    "STARTING",
    {
        "team_name": "a_b",
        "x$y": "1",
        "a/b": "slash",
        "1st": "digit",
        "-dash": "dash",
        ".dot": "dot",
        "v": "a&b<c>\"' \t\r\n]]>",
        "empty": "",
    },
    secure_health_check_url="",
    data_center=DataCenter("Netflix"),
    action_type="MODIFIED",
)

RENDERED: dict[str, Callable[[Format], bytes]] = {
    "apps": lambda fmt: render_applications(REGISTRY, fmt),
    "app": lambda fmt: render_application(ORDERS, fmt),
    "instance": lambda fmt: render_instance(PAYMENTS_1, fmt),
    "empty": lambda fmt: render_applications(EMPTY, fmt),
    "delta": lambda fmt: render_applications(DELTA, fmt),
    "escaping": lambda fmt: render_instance(TRICKY, fmt),
}


# Writing: JSON ----------------------------------------------------------------------------


def key_paths(tree: object, path: str = "") -> list[str]:
    """Every key of every object, in document order, with where it stands."""
    if isinstance(tree, dict):
        return [p for k, v in tree.items() for p in [f"{path}/{k}", *key_paths(v, f"{path}/{k}")]]
    if isinstance(tree, list):
        return [p for item in tree for p in key_paths(item, f"{path}[]")]
    return []


def key_sets(tree: object, path: str = "") -> dict[str, set[str]]:
    """The keys each kind of object holds (every instance together, every port...)."""
    found: dict[str, set[str]] = {}
    if isinstance(tree, dict):
        found[path] = set(tree)
        for key, value in tree.items():
            for inner, keys in key_sets(value, f"{path}/{key}").items():
                found.setdefault(inner, set()).update(keys)
    elif isinstance(tree, list):
        for item in tree:
            for inner, keys in key_sets(item, f"{path}[]").items():
                found.setdefault(inner, set()).update(keys)
    return found


@pytest.mark.parametrize("name", RENDERED)
def test_json_holds_what_eurekas_codec_writes_in_its_order(name: str) -> None:
    ours, eurekas = json.loads(RENDERED[name]("json")), json.loads(fixture(f"{name}.json"))

    assert ours == eurekas
    assert key_paths(ours) == key_paths(eurekas)


@pytest.mark.parametrize("name", RENDERED)
def test_every_json_object_has_exactly_the_keys_eureka_gives_it(name: str) -> None:
    # Spring Cloud's client fails on a field it does not know: no kind of object may have one.
    ours, eurekas = json.loads(RENDERED[name]("json")), json.loads(fixture(f"{name}.json"))

    assert key_sets(ours) == key_sets(eurekas)


@pytest.mark.parametrize("name", RENDERED)
def test_json_is_byte_for_byte_eurekas(name: str) -> None:
    assert RENDERED[name]("json") == fixture(f"{name}.json")


# InstanceInfoSerializer's fields in the order it writes them (sid, appGroupName and asgName
# are never set by the registry).
EUREKA_INSTANCE_FIELDS = [
    "instanceId",
    "hostName",
    "app",
    "ipAddr",
    "status",
    "overriddenStatus",
    "port",
    "securePort",
    "countryId",
    "dataCenterInfo",
    "leaseInfo",
    "metadata",
    "homePageUrl",
    "statusPageUrl",
    "healthCheckUrl",
    "secureHealthCheckUrl",
    "vipAddress",
    "secureVipAddress",
    "isCoordinatingDiscoveryServer",
    "lastUpdatedTimestamp",
    "lastDirtyTimestamp",
    "actionType",
]


def test_an_instance_with_every_field_set_writes_eurekas_fields_in_eurekas_order() -> None:
    everything = replace(TRICKY, secure_health_check_url="https://tricky.local/health")

    written = json.loads(render_instance(everything, "json"))["instance"]

    assert list(written) == EUREKA_INSTANCE_FIELDS
    assert list(written["leaseInfo"]) == [
        "renewalIntervalInSecs",
        "durationInSecs",
        "registrationTimestamp",
        "lastRenewalTimestamp",
        "evictionTimestamp",
        "serviceUpTimestamp",
    ]


def test_unset_urls_vips_and_action_are_left_out() -> None:
    bare = replace(
        JS_ADDED,
        home_page_url=None,
        status_page_url=None,
        health_check_url=None,
        vip_address=None,
        secure_vip_address=None,
        action_type=None,
    )

    written = json.loads(render_instance(bare, "json"))["instance"]

    assert list(written) == [
        field
        for field in EUREKA_INSTANCE_FIELDS
        if not field.endswith(("Url", "VipAddress")) and field not in ("vipAddress", "actionType")
    ]


def test_numbers_and_strings_have_eurekas_json_types() -> None:
    written = json.loads(render_instance(ORDERS_1, "json"))["instance"]

    assert written["port"] == {"$": 8080, "@enabled": "true"}
    assert written["securePort"] == {"$": 443, "@enabled": "false"}
    assert written["countryId"] == 1
    assert written["leaseInfo"]["registrationTimestamp"] == 1700000000000
    assert written["isCoordinatingDiscoveryServer"] == "false"
    assert written["lastUpdatedTimestamp"] == "1700000000200"
    assert written["lastDirtyTimestamp"] == "1699999999000"


@pytest.mark.parametrize("name", ["MyOwn", "Netflix"])
def test_a_data_centre_other_than_amazon_never_carries_metadata(name: DataCenterName) -> None:
    # Spring Cloud's client fails on a MyOwn data centre with metadata.
    instance = replace(ORDERS_1, data_center=DataCenter(name, {"availability-zone": "z1"}))

    json_center = json.loads(render_instance(instance, "json"))["instance"]["dataCenterInfo"]
    xml_center = ET.fromstring(render_instance(instance, "xml")).find("dataCenterInfo")

    assert json_center == {"@class": DEFAULT_CLASS, "name": name}
    assert xml_center is not None
    assert [child.tag for child in xml_center] == ["name"]


def test_an_amazon_data_centre_without_metadata_is_written_as_eureka_writes_it() -> None:
    instance = replace(PAYMENTS_1, data_center=DataCenter("Amazon", {}))

    written = json.loads(render_instance(instance, "json"))["instance"]["dataCenterInfo"]
    xml = render_instance(instance, "xml").decode()

    assert written == {"@class": AMAZON_CLASS, "name": "Amazon", "metadata": {}}
    assert (
        f'<dataCenterInfo class="{AMAZON_CLASS}">\n    <name>Amazon</name>\n'
        f'    <metadata class="{EMPTY_MAP}"/>\n  </dataCenterInfo>'
    ) in xml


def test_a_lone_surrogate_is_written_as_a_json_escape() -> None:
    instance = replace(ORDERS_1, metadata={"k": "a\ud800b"})

    written = render_instance(instance, "json")

    assert b'"k":"a\\ud800b"' in written
    assert json.loads(written)["instance"]["metadata"]["k"] == "a\ud800b"


# Writing: XML -----------------------------------------------------------------------------


def canonical(document: bytes) -> str:
    return ET.canonicalize(document.decode("utf-8"), strip_text=True)


@pytest.mark.parametrize("name", RENDERED)
def test_xml_has_the_structure_xstream_writes(name: str) -> None:
    assert canonical(RENDERED[name]("xml")) == canonical(fixture(f"{name}.xml"))


@pytest.mark.parametrize("name", RENDERED)
def test_xml_is_byte_for_byte_xstreams(name: str) -> None:
    # No declaration, two-space indent, "<a></a>" for an empty value, "<a/>" for no value.
    assert RENDERED[name]("xml") == fixture(f"{name}.xml")


ODD_KEYS = {
    "a:b": "colon",
    "ключ": "cyrillic",
    "\U0001f600x": "beyond the basic plane",
    "$start": "dollar first",
    "_lead": "underscore first",
    "a b": "space",
    "a.b-c_d$e": "every escape",
}


def test_metadata_keys_that_are_no_xml_names_still_make_well_formed_xml() -> None:
    instance = replace(ORDERS_1, metadata=ODD_KEYS)

    metadata = ET.fromstring(render_instance(instance, "xml")).find("metadata")

    assert metadata is not None
    assert [child.tag for child in metadata] == [
        "a_.003ab",
        "_.043a_.043b_.044e_.0447",
        "_.d83d_.de00x",
        "_-start",
        "__lead",
        "a_.0020b",
        "a.b-c__d_-e",
    ]


def test_an_empty_metadata_key_is_left_out_of_xml_only() -> None:
    instance = replace(ORDERS_1, metadata={"": "nameless", "zone": "z1"})

    metadata = ET.fromstring(render_instance(instance, "xml")).find("metadata")
    written = json.loads(render_instance(instance, "json"))["instance"]["metadata"]

    assert metadata is not None
    assert [(child.tag, child.text) for child in metadata] == [("zone", "z1")]
    assert written == {"": "nameless", "zone": "z1"}


def test_a_character_xml_cannot_carry_is_replaced_not_written() -> None:
    instance = replace(ORDERS_1, metadata={"k": "a\x01b\ud800c"}, host_name="h\x00st")

    root = ET.fromstring(render_instance(instance, "xml"))

    assert root.findtext("metadata/k") == "a\ufffdb\ufffdc"
    assert root.findtext("hostName") == "h\ufffdst"


# Writing: read by py-eureka-client, the XML consumer --------------------------------------


class ServedBody(eureka_http.HttpClient):  # type: ignore[misc]  # the client has no types
    """py-eureka-client's pluggable HTTP client (``set_http_client``), answering one body."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.urls: list[str] = []

    async def urlopen(
        self, request: object = None, data: bytes | None = None, timeout: float | None = None
    ) -> Any:
        self.urls.append(str(request))
        response = eureka_http.HttpResponse()
        response.body_text = self.body.decode("utf-8")
        return response


def read_by_py_eureka_client(
    body: bytes, read: Callable[[], Coroutine[Any, Any, Any]]
) -> tuple[Any, list[str]]:
    """What py-eureka-client's own reader makes of ``body``, and the URLs it asked for. The
    client awaits nothing but the served body, so the coroutine finishes on its first step."""
    original, served = eureka_http.http_client, ServedBody(body)
    eureka_http.set_http_client(served)
    try:
        coroutine = read()
        try:
            coroutine.send(None)
        except StopIteration as finished:
            return finished.value, served.urls
        coroutine.close()
        raise AssertionError("py-eureka-client waited on something besides the served body")
    finally:
        eureka_http.set_http_client(original)


def as_py_sees_it(instance: Any) -> dict[str, Any]:
    lease, center = instance.leaseInfo, instance.dataCenterInfo
    return {
        "instanceId": instance.instanceId,
        "hostName": instance.hostName,
        "app": instance.app,
        "ipAddr": instance.ipAddr,
        "status": instance.status,
        "overriddenstatus": instance.overriddenstatus,
        "port": (instance.port.port, instance.port.enabled),
        "securePort": (instance.securePort.port, instance.securePort.enabled),
        "countryId": instance.countryId,
        "dataCenterInfo": (center.className, center.name, center.metadata),
        "leaseInfo": (
            lease.renewalIntervalInSecs,
            lease.durationInSecs,
            lease.registrationTimestamp,
            lease.lastRenewalTimestamp,
            lease.evictionTimestamp,
            lease.serviceUpTimestamp,
        ),
        "metadata": instance.metadata,
        "urls": (
            instance.homePageUrl,
            instance.statusPageUrl,
            instance.healthCheckUrl,
            instance.secureHealthCheckUrl,
        ),
        "vips": (instance.vipAddress, instance.secureVipAddress),
        "isCoordinatingDiscoveryServer": instance.isCoordinatingDiscoveryServer,
        "lastUpdatedTimestamp": instance.lastUpdatedTimestamp,
        "lastDirtyTimestamp": instance.lastDirtyTimestamp,
        "actionType": instance.actionType,
    }


def as_py_should_see(record: EurekaInstance) -> dict[str, Any]:
    lease, center = record.lease, record.data_center
    amazon = center.name == "Amazon"
    return {
        "instanceId": record.instance_id,
        "hostName": record.host_name,
        "app": record.app,
        "ipAddr": record.ip_addr,
        "status": record.status,
        "overriddenstatus": record.overridden_status,
        "port": (record.port.number, record.port.enabled),
        "securePort": (record.secure_port.number, record.secure_port.enabled),
        "countryId": record.country_id,
        "dataCenterInfo": (
            AMAZON_CLASS if amazon else DEFAULT_CLASS,
            center.name,
            center.metadata if amazon else {},
        ),
        "leaseInfo": (
            lease.renewal_interval,
            lease.duration,
            lease.registration_ms,
            lease.last_renewal_ms,
            lease.eviction_ms,
            lease.service_up_ms,
        ),
        "metadata": record.metadata,
        "urls": (
            record.home_page_url,
            record.status_page_url,
            record.health_check_url,
            record.secure_health_check_url or "",
        ),
        "vips": (record.vip_address, record.secure_vip_address),
        "isCoordinatingDiscoveryServer": False,
        "lastUpdatedTimestamp": record.last_updated_ms,
        "lastDirtyTimestamp": record.last_dirty_ms,
        "actionType": record.action_type,
    }


@pytest.mark.parametrize(
    ("registry", "path"), [(REGISTRY, "apps/"), (DELTA, "apps/delta"), (EMPTY, "apps/")]
)
def test_py_eureka_client_reads_the_registry_as_written(registry: Applications, path: str) -> None:
    read = eureka_basic.get_delta if path.endswith("delta") else eureka_basic.get_applications

    apps, urls = read_by_py_eureka_client(
        render_applications(registry, "xml"), lambda: read("http://eureka.test/eureka/")
    )

    assert urls == [f"http://eureka.test/eureka/{path}"]
    assert (apps.versions__delta, apps.apps__hashcode) == (
        registry.versions_delta,
        registry.apps_hashcode,
    )
    assert [app.name for app in apps.applications] == [app.name for app in registry.applications]
    for app in registry.applications:
        seen = apps.get_application(app.name.lower()).instances
        assert [as_py_sees_it(i) for i in seen] == [as_py_should_see(i) for i in app.instances]


def test_py_eureka_client_reads_an_application_as_written() -> None:
    app, _ = read_by_py_eureka_client(
        render_application(ORDERS, "xml"),
        lambda: eureka_basic.get_application("http://eureka.test/eureka/", "ORDERS"),
    )

    assert app.name == "ORDERS"
    assert [as_py_sees_it(i) for i in app.instances] == [
        as_py_should_see(ORDERS_1),
        as_py_should_see(ORDERS_2),
    ]


@pytest.mark.parametrize("record", [ORDERS_1, PAYMENTS_1], ids=["myown", "amazon"])
def test_py_eureka_client_reads_an_instance_as_written(record: EurekaInstance) -> None:
    instance, _ = read_by_py_eureka_client(
        render_instance(record, "xml"),
        lambda: eureka_basic.get_app_instance(
            "http://eureka.test/eureka/", record.app, record.instance_id
        ),
    )

    assert as_py_sees_it(instance) == as_py_should_see(record)


def test_py_eureka_client_reads_escaped_metadata_names_as_eureka_writes_them() -> None:
    instance, _ = read_by_py_eureka_client(
        render_instance(TRICKY, "xml"),
        lambda: eureka_basic.get_app_instance("http://eureka.test/eureka/", "TRICKY", "tricky-1"),
    )

    # As against Eureka itself: py-eureka-client does not unescape element names.
    assert instance.metadata == {
        "team__name": "a_b",
        "x_-y": "1",
        "a_.002fb": "slash",
        "_.0031st": "digit",
        "_.002ddash": "dash",
        "_.002edot": "dot",
        "v": "a&b<c>\"' \t\r\n]]>",
        "empty": None,
    }
    assert instance.secureHealthCheckUrl is None
    assert instance.dataCenterInfo.name == "Netflix"


# Reading: what the clients send -----------------------------------------------------------


def test_py_eureka_clients_registration_is_read_as_sent() -> None:
    instance = parse_registration(
        fixture("py_register.json"), JSON_CONTENT_TYPE, "PYORDERS", NOW_MS
    )

    assert instance == EurekaInstance(
        instance_id="127.0.0.1:pyorders:8080",
        app="PYORDERS",
        host_name="localhost",
        ip_addr="127.0.0.1",
        port=Port(8080, enabled=True),
        status="UP",
        overridden_status="UNKNOWN",
        secure_port=Port(9443, enabled=False),
        country_id=1,
        data_center=DataCenter("MyOwn"),
        lease=LeaseInfo(renewal_interval=2, duration=6),
        metadata={"management.port": "8080", "zone": "default", "team": "a_b"},
        home_page_url="http://localhost:8080/",
        status_page_url="http://localhost:8080/info",
        health_check_url="http://localhost:8080/health",
        secure_health_check_url="",
        vip_address="pyorders",
        secure_vip_address="pyorders",
        last_updated_ms=NOW_MS,
        last_dirty_ms=1796445645568,
    )


def test_eureka_js_clients_registration_is_read_as_sent() -> None:
    # Lower-case app in path and body, no instanceId (the id is the host), a boolean
    # "@enabled", no securePort, leaseInfo or timestamps.
    instance = parse_registration(
        fixture("js_register.json"), JSON_CONTENT_TYPE, "jsorders", NOW_MS
    )

    assert instance == EurekaInstance(
        instance_id="localhost",
        app="JSORDERS",
        host_name="localhost",
        ip_addr="127.0.0.1",
        port=Port(3000, enabled=True),
        vip_address="jsorders",
        last_updated_ms=NOW_MS,
        last_dirty_ms=NOW_MS,
    )
    assert instance.secure_port == Port(443, enabled=False)
    assert instance.lease == LeaseInfo(renewal_interval=30, duration=90)


def test_spring_clouds_registration_is_read_as_sent() -> None:
    # Explicit nulls, "sid", a boolean isCoordinatingDiscoveryServer and number timestamps.
    instance = parse_registration(
        fixture("spring_register.json"), "application/json", "SPRINGAPP", NOW_MS
    )

    assert instance == EurekaInstance(
        instance_id="host1:springapp:8080",
        app="SPRINGAPP",
        host_name="host1",
        ip_addr="10.0.0.9",
        port=Port(8080, enabled=True),
        secure_port=Port(443, enabled=False),
        metadata={"management.port": "8081"},
        home_page_url="http://host1:8080/",
        status_page_url="http://host1:8080/actuator/info",
        health_check_url="http://host1:8080/actuator/health",
        vip_address="springapp",
        secure_vip_address="springapp",
        last_updated_ms=NOW_MS,
        last_dirty_ms=1796445744551,
    )


def test_xstreams_xml_of_an_instance_is_read_as_a_registration() -> None:
    instance = parse_registration(fixture("escaping.xml"), XML_CONTENT_TYPE, "tricky", NOW_MS)

    assert instance == as_registered(TRICKY)


# Reading: lenient where the clients differ ------------------------------------------------

JS_BODY: dict[str, Any] = json.loads(fixture("js_register.json"))["instance"]
DROP = object()


def register(changes: dict[str, Any] | None = None, path_app: str = "jsorders") -> EurekaInstance:
    """eureka-js-client's captured registration, with ``changes`` (``DROP`` removes a field)."""
    fields = {**JS_BODY, **(changes or {})}
    body = {"instance": {key: value for key, value in fields.items() if value is not DROP}}
    return parse_registration(json.dumps(body).encode(), JSON_CONTENT_TYPE, path_app, NOW_MS)


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (3000, Port(3000, enabled=True)),
        ("3000", Port(3000, enabled=True)),
        ({"$": "3000", "@enabled": "true"}, Port(3000, enabled=True)),
        ({"$": " 3000 ", "@enabled": "FALSE"}, Port(3000, enabled=False)),
        ({"$": 3000, "@enabled": False}, Port(3000, enabled=False)),
        ({"$": 3000}, Port(3000, enabled=True)),
        ({"$": 0, "@enabled": "false"}, Port(0, enabled=False)),
    ],
)
def test_a_port_is_taken_in_every_shape_the_clients_send(port: object, expected: Port) -> None:
    assert register({"port": port}).port == expected


@pytest.mark.parametrize(
    ("secure_port", "expected"),
    [
        (DROP, Port(443, enabled=False)),
        (None, Port(443, enabled=False)),
        ({"$": 8443}, Port(8443, enabled=False)),
        ({"$": 8443, "@enabled": "true"}, Port(8443, enabled=True)),
        (8443, Port(8443, enabled=True)),
    ],
)
def test_a_secure_port_defaults_to_eurekas_disabled_443(
    secure_port: object, expected: Port
) -> None:
    assert register({"securePort": secure_port}).secure_port == expected


@pytest.mark.parametrize(
    ("center", "expected"),
    [
        ({"name": "MyOwn"}, DataCenter("MyOwn")),
        ({"@class": DEFAULT_CLASS, "name": "myown"}, DataCenter("MyOwn")),
        ({"name": "NETFLIX"}, DataCenter("Netflix")),
        ({"name": "MyOwn", "metadata": {"availability-zone": "z1"}}, DataCenter("MyOwn")),
        ({"name": "MyOwn", "metadata": "not even an object"}, DataCenter("MyOwn")),
        (
            {"@class": AMAZON_CLASS, "name": "Amazon", "metadata": {"instance-id": "i-1"}},
            DataCenter("Amazon", {"instance-id": "i-1"}),
        ),
        (
            {"name": "amazon", "metadata": {"availability-zone": "z1"}},
            DataCenter("Amazon", {"availability-zone": "z1", "instance-id": "localhost"}),
        ),
    ],
)
def test_a_data_centre_is_taken_without_class_in_any_case(
    center: dict[str, Any], expected: DataCenter
) -> None:
    assert register({"dataCenterInfo": center}).data_center == expected


@pytest.mark.parametrize(
    ("changes", "expected_id"),
    [
        ({"instanceId": "js-1"}, "js-1"),
        ({"instanceId": ""}, "localhost"),
        ({"instanceId": None}, "localhost"),
        (
            {"dataCenterInfo": {"name": "Amazon", "metadata": {"instance-id": "i-9"}}},
            "i-9",
        ),
        (
            {
                "instanceId": "js-1",
                "dataCenterInfo": {"name": "Amazon", "metadata": {"instance-id": "i-9"}},
            },
            "js-1",
        ),
        ({"dataCenterInfo": {"name": "MyOwn", "metadata": {"instance-id": "i-9"}}}, "localhost"),
    ],
)
def test_the_id_is_instance_id_else_amazons_instance_id_else_the_host(
    changes: dict[str, Any], expected_id: str
) -> None:
    assert register(changes).instance_id == expected_id


@pytest.mark.parametrize(
    ("changes", "status", "overridden"),
    [
        ({"status": DROP}, "UP", "UNKNOWN"),
        ({"status": None}, "UP", "UNKNOWN"),
        ({"status": "BOGUS"}, "UNKNOWN", "UNKNOWN"),
        ({"status": 5}, "UNKNOWN", "UNKNOWN"),
        ({"status": "down"}, "DOWN", "UNKNOWN"),
        ({"overriddenstatus": "OUT_OF_SERVICE"}, "UP", "OUT_OF_SERVICE"),
        ({"overriddenStatus": "OUT_OF_SERVICE"}, "UP", "OUT_OF_SERVICE"),
        ({"overriddenStatus": None, "overriddenstatus": "DOWN"}, "UP", "DOWN"),
        ({"overriddenStatus": "NOPE"}, "UP", "UNKNOWN"),
    ],
)
def test_statuses_follow_eurekas_decoder(
    changes: dict[str, Any], status: str, overridden: str
) -> None:
    instance = register(changes)

    assert (instance.status, instance.overridden_status) == (status, overridden)


@pytest.mark.parametrize(
    ("lease", "expected"),
    [
        (DROP, LeaseInfo(30, 90)),
        (None, LeaseInfo(30, 90)),
        ({}, LeaseInfo(30, 90)),
        ({"renewalIntervalInSecs": 2, "durationInSecs": 6}, LeaseInfo(2, 6)),
        ({"renewalIntervalInSecs": "2", "durationInSecs": "6"}, LeaseInfo(2, 6)),
        ({"renewalIntervalInSecs": 0, "durationInSecs": 0}, LeaseInfo(30, 90)),
        ({"renewalIntervalInSecs": -1, "durationInSecs": -5}, LeaseInfo(30, 90)),
        (
            {"durationInSecs": 6, "registrationTimestamp": "x", "evictionTimestamp": 1.5},
            LeaseInfo(30, 6),
        ),
    ],
)
def test_lease_intervals_are_the_clients_and_eurekas_defaults_fill_in(
    lease: object, expected: LeaseInfo
) -> None:
    # The lease's timestamps are the registry's: whatever the body says of them is not read.
    assert register({"leaseInfo": lease}).lease == expected


@pytest.mark.parametrize(
    ("changes", "dirty"),
    [
        ({}, NOW_MS),
        ({"lastDirtyTimestamp": "1796445645568"}, 1796445645568),
        ({"lastDirtyTimestamp": 1796445645568}, 1796445645568),
        ({"lastDirtyTimestamp": None}, NOW_MS),
        ({"lastUpdatedTimestamp": "not a number", "lastDirtyTimestamp": "7"}, 7),
    ],
)
def test_last_dirty_is_the_clients_and_last_updated_is_now(
    changes: dict[str, Any], dirty: int
) -> None:
    instance = register(changes)

    assert (instance.last_dirty_ms, instance.last_updated_ms) == (dirty, NOW_MS)


def test_metadata_drops_javas_class_marker_and_nulls_and_keeps_numbers_as_text() -> None:
    metadata = {"@class": EMPTY_MAP, "zone": "z1", "weight": 5, "canary": True, "gone": None}

    assert register({"metadata": metadata}).metadata == {
        "zone": "z1",
        "weight": "5",
        "canary": "true",
    }


def test_explicit_nulls_and_unknown_fields_are_ignored() -> None:
    instance = register(
        {
            "homePageUrl": None,
            "metadata": None,
            "countryId": None,
            "actionType": None,
            "asgName": None,
            "appGroupName": "GROUP",
            "sid": "na",
            "isCoordinatingDiscoveryServer": False,
            "extraField": {"anything": ["at", "all"]},
        }
    )

    assert instance == register()
    assert instance.action_type is None


def test_the_app_is_upper_cased_in_path_and_body_alike() -> None:
    assert register({"app": "JsOrders"}, path_app="jsORDERS").app == "JSORDERS"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"instance": {}}', "application/json; charset=UTF-8"),
        (b'  \n{"instance": {}}', None),
        (b'{"instance": {}}', "text/plain"),
        (b"<instance/>", "APPLICATION/XML"),
        (b"\n <instance/>", None),
        (b"\xef\xbb\xbf<instance/>", None),
        (b"<instance/>", "application/x-www-form-urlencoded"),
    ],
)
def test_the_format_is_the_content_types_else_the_bodys_first_character(
    body: bytes, content_type: str | None
) -> None:
    # Both bodies are empty instances: reaching Eureka's first check means the body was read.
    with pytest.raises(InvalidRequest, match=r"^Missing instanceId$"):
        parse_registration(body, content_type, "JSORDERS", NOW_MS)


def test_an_xml_registration_is_read_like_its_json() -> None:
    body = b"""<instance>
      <hostName>localhost</hostName><app>jsorders</app><ipAddr>127.0.0.1</ipAddr>
      <status>UP</status><overriddenstatus>UNKNOWN</overriddenstatus>
      <port enabled="true">3000</port><securePort>8443</securePort>
      <dataCenterInfo class="ignored"><name>MyOwn</name></dataCenterInfo>
      <leaseInfo><renewalIntervalInSecs>5</renewalIntervalInSecs></leaseInfo>
      <metadata class="ignored"><team__name>a_b</team__name><x_-y>1</x_-y></metadata>
      <vipAddress>jsorders</vipAddress><lastDirtyTimestamp>12</lastDirtyTimestamp>
    </instance>"""

    instance = parse_registration(body, XML_CONTENT_TYPE, "jsorders", NOW_MS)

    assert instance == EurekaInstance(
        instance_id="localhost",
        app="JSORDERS",
        host_name="localhost",
        ip_addr="127.0.0.1",
        port=Port(3000, enabled=True),
        secure_port=Port(8443, enabled=True),
        lease=LeaseInfo(renewal_interval=5, duration=90),
        metadata={"team_name": "a_b", "x$y": "1"},
        vip_address="jsorders",
        last_updated_ms=NOW_MS,
        last_dirty_ms=12,
    )


# Reading: round trips ---------------------------------------------------------------------


def as_registered(record: EurekaInstance) -> EurekaInstance:
    """What registering a served record gives: its lease intervals, not its lease times."""
    lease = LeaseInfo(record.lease.renewal_interval, record.lease.duration)
    return replace(record, lease=lease, last_updated_ms=NOW_MS, action_type=None)


ROUND_TRIPS = {
    "myown": ORDERS_1,
    "overridden": ORDERS_2,
    "amazon": PAYMENTS_1,
    "escaping": TRICKY,
    "odd keys": replace(ORDERS_1, metadata=ODD_KEYS),
    "bare": replace(JS_ADDED, vip_address=None, health_check_url=None, action_type=None),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ROUND_TRIPS)
def test_a_rendered_instance_registers_as_itself(name: str, fmt: Format) -> None:
    record = ROUND_TRIPS[name]

    body = render_instance(record, fmt)
    parsed = parse_registration(body, media_type(fmt), record.app.lower(), NOW_MS)

    assert parsed == as_registered(record)


# Reading: refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # Eureka's own checks, in its order.
        ({"hostName": DROP}, "Missing instanceId"),
        ({"hostName": "", "instanceId": ""}, "Missing instanceId"),
        ({"hostName": "", "instanceId": "js-1"}, "Missing hostname"),
        ({"ipAddr": DROP}, "Missing ip address"),
        ({"ipAddr": "  "}, "Missing ip address"),
        ({"app": DROP}, "Missing appName"),
        ({"app": None}, "Missing appName"),
        ({"app": "payments"}, "Mismatched appName, expecting JSORDERS but was PAYMENTS"),
        ({"dataCenterInfo": DROP}, "Missing dataCenterInfo"),
        ({"dataCenterInfo": {"@class": DEFAULT_CLASS}}, "Missing dataCenterInfo Name"),
        ({"dataCenterInfo": {"name": " "}}, "Missing dataCenterInfo Name"),
        # Values that cannot be stored and served back.
        (
            {"dataCenterInfo": {"name": "Azure"}},
            "dataCenterInfo name 'Azure' is not one of MyOwn, Amazon, Netflix",
        ),
        ({"dataCenterInfo": "MyOwn"}, "dataCenterInfo must be an object"),
        ({"dataCenterInfo": {"name": 1}}, "dataCenterInfo.name must be a string"),
        (
            {"dataCenterInfo": {"name": "Amazon", "metadata": {"instance-id": 1.5}}},
            "dataCenterInfo.metadata.instance-id must be a string",
        ),
        ({"hostName": 42}, "hostName must be a string"),
        ({"instanceId": ["js-1"]}, "instanceId must be a string"),
        ({"vipAddress": {"vip": "x"}}, "vipAddress must be a string"),
        ({"port": DROP}, "Missing port"),
        ({"port": None}, "Missing port"),
        ({"port": {"@enabled": "true"}}, "Missing port"),
        ({"port": {"$": 3000.5}}, "port.$ must be an integer"),
        ({"port": {"$": "3000.0"}}, "port.$ must be an integer"),
        ({"port": {"$": "80a"}}, "port.$ must be an integer"),
        ({"port": {"$": True}}, "port.$ must be an integer"),
        ({"port": 70000}, "port.$ must be an integer from 0 to 65535"),
        ({"port": {"$": -1}}, "port.$ must be an integer from 0 to 65535"),
        ({"port": {"$": 3000, "@enabled": 1}}, "port.@enabled must be a boolean"),
        ({"securePort": {"$": "x"}}, "securePort.$ must be an integer"),
        ({"countryId": "one"}, "countryId must be an integer"),
        ({"countryId": 2**31}, "countryId must be an integer from -2147483648 to 2147483647"),
        ({"lastDirtyTimestamp": "1.7e12"}, "lastDirtyTimestamp must be an integer"),
        ({"lastDirtyTimestamp": 1.7e12}, "lastDirtyTimestamp must be an integer"),
        ({"lastDirtyTimestamp": ""}, "lastDirtyTimestamp must be an integer"),
        ({"lastDirtyTimestamp": "1" * 25}, "lastDirtyTimestamp must be an integer"),
        (
            {"lastDirtyTimestamp": -1},
            "lastDirtyTimestamp must be an integer from 0 to 9223372036854775807",
        ),
        ({"leaseInfo": [30, 90]}, "leaseInfo must be an object"),
        (
            {"leaseInfo": {"durationInSecs": "ninety"}},
            "leaseInfo.durationInSecs must be an integer",
        ),
        (
            {"leaseInfo": {"renewalIntervalInSecs": 2.5}},
            "leaseInfo.renewalIntervalInSecs must be an integer",
        ),
        ({"metadata": ["zone"]}, "metadata must be an object"),
        ({"metadata": {"zone": {"name": "z1"}}}, "metadata.zone must be a string"),
        ({"metadata": {"weight": 1.5}}, "metadata.weight must be a string"),
    ],
)
def test_a_registration_eureka_or_its_clients_could_not_use_is_refused(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        register(changes)

    assert refused.value.message == message
    assert (refused.value.status, refused.value.code) == (400, "invalid_request")


def test_a_port_flag_that_is_no_on_off_word_is_refused_naming_it() -> None:
    with pytest.raises(InvalidRequest, match=r"^port\.@enabled must be one of .*'maybe'"):
        register({"port": {"$": 3000, "@enabled": "maybe"}})


UNPARSABLE = "cannot parse request body: "


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"instance": ', "request body is not valid JSON"),
        (b'\xff\xfe{"instance": {}}', "request body is not valid JSON"),
        (b"<instance/>", "request body is not valid JSON"),
        (b'{"instance": {}, "instance": {}}', "request body is not valid JSON"),
        (b'{"instance": {"port": NaN}}', "request body is not valid JSON"),
        (b"[" * 40, "request body nests arrays and objects deeper than 32 levels"),
    ],
)
def test_a_json_body_is_read_by_the_registrys_one_json_reader(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_registration(body, JSON_CONTENT_TYPE, "JSORDERS", NOW_MS)

    assert refused.value.message.startswith(message)


@pytest.mark.parametrize("content_type", [JSON_CONTENT_TYPE, XML_CONTENT_TYPE])
def test_a_body_over_the_registrys_limit_is_refused_unread(content_type: str) -> None:
    with pytest.raises(PayloadTooLarge):
        parse_registration(b"[" * (MAX_REGISTRY_BODY + 1), content_type, "JSORDERS", NOW_MS)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"hello", None, "it is neither JSON nor XML"),
        (b"", None, "it is neither JSON nor XML"),
        (b"   ", "text/plain", "it is neither JSON nor XML"),
        (b'{"application": {}}', None, 'expected {"instance": {...}}'),
        (b'[{"instance": {}}]', None, 'expected {"instance": {...}}'),
        (b'{"instance": {}, "extra": 1}', None, 'expected {"instance": {...}}'),
        (
            b"<application><name>X</name></application>",
            None,
            "the XML root is <application>, not <instance>",
        ),
        (b'<instance xmlns="urn:x"/>', None, "the XML root is <{urn:x}instance>, not <instance>"),
    ],
)
def test_a_body_that_is_no_registration_is_refused(
    body: bytes, content_type: str | None, message: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_registration(body, content_type, "JSORDERS", NOW_MS)

    assert refused.value.message == UNPARSABLE + message


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"instance": {}}', XML_CONTENT_TYPE),
        (b"<instance>", None),
        (b"<instance><hostName>h</instance>", None),
        (b"<instance><hostName>&xxe;</hostName></instance>", None),
    ],
)
def test_xml_that_is_not_well_formed_is_refused_with_the_parsers_reason(
    body: bytes, content_type: str | None
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_registration(body, content_type, "JSORDERS", NOW_MS)

    # The reason is expat's own words, which vary with its version.
    assert refused.value.message.startswith(UNPARSABLE + "it is not well-formed XML (")
    assert refused.value.message.endswith(")")


def test_an_instance_that_is_no_object_is_refused() -> None:
    with pytest.raises(InvalidRequest, match=r"^instance must be an object$"):
        parse_registration(b'{"instance": "x"}', JSON_CONTENT_TYPE, "JSORDERS", NOW_MS)


# Reading: untrusted XML -------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE instance [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<instance><hostName>&lol9;</hostName></instance>"""
EXTERNAL_ENTITY = b"""<!DOCTYPE instance [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<instance><hostName>&xxe;</hostName><ipAddr>10.0.0.1</ipAddr><app>ORDERS</app></instance>"""
EXTERNAL_DTD = b"""<!DOCTYPE instance SYSTEM "http://169.254.169.254/latest/meta-data/">
<instance><hostName>h</hostName></instance>"""
PARAMETER_ENTITY = b"""<!DOCTYPE instance [
  <!ENTITY % remote SYSTEM "file:///etc/hostname"> %remote;
]>
<instance/>"""

# While a list is on this stack, file and network access is recorded in it (Python's audit
# events: whatever reads a file or a URL from Python raises one of these).
_WATCHING: list[list[str]] = []
_WATCHED_EVENTS = ("open", "urllib.Request", "socket.connect", "socket.getaddrinfo")
_HOOKED: list[bool] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _WATCHING and event in _WATCHED_EVENTS:
        _WATCHING[-1].append(f"{event} {args[0]!r}")


@contextmanager
def recorded_access() -> Iterator[list[str]]:
    if not _HOOKED:  # an audit hook cannot be removed: one for the whole run
        sys.addaudithook(_audit)
        _HOOKED.append(True)
    seen: list[str] = []
    _WATCHING.append(seen)
    try:
        yield seen
    finally:
        _WATCHING.pop()


def test_access_is_recorded_while_watched() -> None:
    with recorded_access() as seen:
        sys.audit("open", "/etc/passwd", "r", 0)  # the event, not the I/O

    assert seen == ["open '/etc/passwd'"]


@pytest.mark.parametrize(
    "document",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        EXTERNAL_DTD,
        PARAMETER_ENTITY,
        b"<!DOCTYPE instance><instance/>",
    ],
    ids=["billion laughs", "external entity", "external dtd", "parameter entity", "bare doctype"],
)
def test_a_document_with_a_doctype_is_refused_and_nothing_is_read(document: bytes) -> None:
    with recorded_access() as seen, pytest.raises(InvalidRequest) as refused:
        parse_registration(document, XML_CONTENT_TYPE, "ORDERS", NOW_MS)

    assert refused.value.message == UNPARSABLE + "a DOCTYPE is not accepted"
    assert seen == []


def test_a_doctype_is_refused_whatever_the_documents_encoding() -> None:
    document = '<!DOCTYPE instance [<!ENTITY x "y">]><instance/>'.encode("utf-16")

    with pytest.raises(InvalidRequest, match="a DOCTYPE is not accepted"):
        parse_registration(document, XML_CONTENT_TYPE, "ORDERS", NOW_MS)


# Negotiation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "json_wanted"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/xml", False),
        ("application/json", True),
        ("application/xml;q=0.9, application/json", True),
        ("application/vnd.spring+json", True),
        ("Application/JSON", True),
    ],
)
def test_json_is_wanted_when_accept_mentions_json_anywhere(
    accept: str | None, json_wanted: bool
) -> None:
    assert wants_json(accept) is json_wanted


def test_each_format_has_its_media_type() -> None:
    assert (media_type("json"), media_type("xml")) == ("application/json", "application/xml")
    assert (JSON_CONTENT_TYPE, XML_CONTENT_TYPE) == ("application/json", "application/xml")
