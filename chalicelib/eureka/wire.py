"""Eureka's wire formats: a register body read into an ``EurekaInstance``, and the registry's
answers written exactly as Eureka's own codecs write them (``EurekaJacksonCodec`` for JSON,
XStream for XML).

Reading is lenient where real clients differ from Eureka (eureka-js-client sends whatever its
user configured: a plain port number, no ``@class``, a lower-case data centre name), and strict
where a wrong value would be stored and served back: a refusal is ``InvalidRequest`` naming
the field, in Eureka's own words where Eureka has them. Writing is byte for byte Eureka's:
Spring Cloud's client fails on any field it does not know, and py-eureka-client's XML reader
fails on a missing attribute or a number it cannot ``int()``.

Both formats meet in one JSON-shaped form: an XML body is read into what the JSON codec would
have seen (attributes as ``@name``, an element's text beside attributes as ``$``), and XML is
written from the same tree the JSON is dumped from.
"""

from __future__ import annotations

import codecs
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, NoReturn, TypeAlias, TypeVar

from chalicelib.errors import InvalidRequest, PayloadTooLarge
from chalicelib.eureka.records import (
    DEFAULT_COUNTRY_ID,
    DEFAULT_DURATION,
    DEFAULT_RENEWAL_INTERVAL,
    DEFAULT_SECURE_PORT,
    EUREKA_STATUSES,
    Application,
    Applications,
    DataCenter,
    DataCenterName,
    EurekaInstance,
    EurekaStatus,
    LeaseInfo,
    Port,
)
from chalicelib.validation import MAX_REGISTRY_BODY, parse_json_body
from lambdamesh_routing.flags import InvalidFlag, parse_flag

Format = Literal["json", "xml"]
_FORMATS: tuple[Format, ...] = ("json", "xml")
JSON_CONTENT_TYPE = "application/json"
XML_CONTENT_TYPE = "application/xml"

# A body's instance, JSON-shaped whatever the format it came in.
_Raw: TypeAlias = dict[str, object]
_Value = TypeVar("_Value")

_STATUSES: dict[str, EurekaStatus] = {status: status for status in EUREKA_STATUSES}
_DATA_CENTERS: dict[str, DataCenterName] = {
    "myown": "MyOwn",
    "amazon": "Amazon",
    "netflix": "Netflix",
}
_DEFAULT_CLASS = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
_AMAZON_CLASS = "com.netflix.appinfo.AmazonInfo"
_EMPTY_MAP_CLASS = "java.util.Collections$EmptyMap"
_AMAZON_ID = "instance-id"

# Java's int and long, which Eureka's clients read these numbers into; a port's own range.
_JAVA_INT = (-(2**31), 2**31 - 1)
_TIMESTAMP = (0, 2**63 - 1)
_PORT_NUMBER = (0, 65535)
_INTEGER = re.compile(r"-?[0-9]{1,19}")
# How much of a value a refusal quotes: enough to recognise it, never the body back.
_SHOWN = 80


# Negotiation ------------------------------------------------------------------------------


def wants_json(accept: str | None) -> bool:
    """Eureka answers JSON when ``Accept`` mentions json anywhere, XML otherwise (no header,
    ``*/*``). Eureka compares case-sensitively; any case is taken here, which only ever gives
    JSON to a client that asked for it."""
    return accept is not None and "json" in accept.lower()


def media_type(fmt: Format) -> str:
    return JSON_CONTENT_TYPE if fmt == "json" else XML_CONTENT_TYPE


# Reading a registration -------------------------------------------------------------------


def parse_registration(
    body: bytes, content_type: str | None, path_app: str, now_ms: int
) -> EurekaInstance:
    """The instance a ``POST /apps/{app}`` body registers, checked as Eureka checks it.

    ``last_updated_ms`` is ``now_ms``; ``lastDirtyTimestamp`` defaults to it. Of ``leaseInfo``
    only the two intervals are the client's: its timestamps are the registry's to keep.
    """
    if len(body) > MAX_REGISTRY_BODY:
        raise PayloadTooLarge(
            f"request body is {len(body)} bytes; the limit is {MAX_REGISTRY_BODY}"
        )
    if _body_format(body, content_type) == "json":
        raw = _json_instance(body)
    else:
        raw = _xml_instance(body)
    return _instance(raw, path_app, now_ms)


def _body_format(body: bytes, content_type: str | None) -> Format:
    declared = (content_type or "").lower()
    if "json" in declared:
        return "json"
    if "xml" in declared:
        return "xml"
    first = body.removeprefix(codecs.BOM_UTF8).lstrip()[:1]
    if first in (b"{", b"["):
        return "json"
    if first == b"<":
        return "xml"
    _unparsable("it is neither JSON nor XML")


def _unparsable(why: str) -> NoReturn:
    raise InvalidRequest(f"cannot parse request body: {why}")


def _json_instance(body: bytes) -> _Raw:
    # The registry's one JSON reader: UTF-8, bounded nesting, no NaN, no key given twice.
    document = parse_json_body(body, required='{"instance": {...}}')
    if not isinstance(document, dict) or list(document) != ["instance"]:
        _unparsable('expected {"instance": {...}}')
    return _object(document["instance"], "instance")


class _RefuseDoctype(ET.TreeBuilder):
    """No Eureka client sends a DOCTYPE, and refusing every one refuses all entity tricks
    (billion laughs, external entities) before expat reads a declaration. ElementTree on expat
    >= 2.4.1 is safe against both anyway and never fetches an external entity:
    https://docs.python.org/3/library/xml.html#xml-vulnerabilities
    """

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        _unparsable("a DOCTYPE is not accepted")


def _xml_instance(body: bytes) -> _Raw:
    parser = ET.XMLParser(target=_RefuseDoctype())  # noqa: S314 - see _RefuseDoctype
    try:
        parser.feed(body)
        root = parser.close()
    except ET.ParseError as exc:
        _unparsable(f"it is not well-formed XML ({exc})")
    except (ValueError, LookupError) as exc:  # an encoding expat cannot read (UTF-7, UTF-32)
        _unparsable(f"its declared encoding cannot be read ({str(exc)[:_SHOWN]})")
    if root.tag != "instance":
        _unparsable(f"the XML root is <{root.tag[:_SHOWN]}>, not <instance>")
    return _unique(((child.tag, _xml_field(child)) for child in root), "instance")


def _unique(fields: Iterable[tuple[str, _Value]], parent: str) -> dict[str, _Value]:
    """An element given twice in one parent is refused, as JSON's reader refuses a key given
    twice: two readers would take two different values from it."""
    found: dict[str, _Value] = {}
    for name, value in fields:
        if name in found:
            _unparsable(f"<{name[:_SHOWN]}> appears twice in <{parent}>")
        found[name] = value
    return found


def _xml_field(element: ET.Element) -> object:
    """One child of ``<instance>`` as the JSON codec would have it. Only the shapes Eureka
    has are read, so no document nests deeper than two levels here."""
    if element.tag == "metadata":
        return _xml_metadata(element)
    if element.tag in ("dataCenterInfo", "leaseInfo"):
        children = (
            (child.tag, _xml_metadata(child) if child.tag == "metadata" else _text_of(child))
            for child in element
        )
        return {**_xml_attributes(element), **_unique(children, element.tag)}
    if element.attrib:  # <port enabled="true">8080</port>
        return {"$": _text_of(element), **_xml_attributes(element)}
    return _text_of(element)


def _xml_attributes(element: ET.Element) -> _Raw:
    return {f"@{name}": value for name, value in element.attrib.items()}


def _xml_metadata(element: ET.Element) -> dict[str, str]:
    entries = ((_unescape_name(child.tag), _text_of(child)) for child in element)
    return _unique(entries, "metadata")


def _text_of(element: ET.Element) -> str:
    return element.text or ""


def _instance(raw: _Raw, path_app: str, now_ms: int) -> EurekaInstance:
    raw_center = raw.get("dataCenterInfo")
    center_name = _center_name(raw_center)
    host = _field(raw, "hostName")
    instance_id = _identity(raw, raw_center, center_name, host)
    ip = _field(raw, "ipAddr")
    _require(host, "Missing hostname")
    _require(ip, "Missing ip address")
    app = _app(raw, path_app)
    return EurekaInstance(
        instance_id=instance_id,
        app=app,
        host_name=host or "",
        ip_addr=ip or "",
        port=_port(raw.get("port"), "port", default_enabled=True),
        status=_status(raw.get("status"), "UP"),
        overridden_status=_status(_present(raw, "overriddenStatus", "overriddenstatus"), "UNKNOWN"),
        secure_port=_secure_port(raw.get("securePort")),
        country_id=_integer(raw.get("countryId"), "countryId", _JAVA_INT, DEFAULT_COUNTRY_ID),
        data_center=_data_center(raw_center, center_name, instance_id),
        lease=_lease(raw.get("leaseInfo")),
        metadata=_metadata(raw.get("metadata"), "metadata"),
        home_page_url=_field(raw, "homePageUrl"),
        status_page_url=_field(raw, "statusPageUrl"),
        health_check_url=_field(raw, "healthCheckUrl"),
        secure_health_check_url=_field(raw, "secureHealthCheckUrl"),
        vip_address=_field(raw, "vipAddress"),
        secure_vip_address=_field(raw, "secureVipAddress"),
        last_updated_ms=now_ms,
        last_dirty_ms=_integer(
            raw.get("lastDirtyTimestamp"), "lastDirtyTimestamp", _TIMESTAMP, now_ms
        ),
    )


def _identity(
    raw: _Raw, raw_center: object, center_name: DataCenterName | None, host: str | None
) -> str:
    """Eureka's id: ``instanceId``, else an Amazon instance's ``instance-id``, else the host."""
    amazon_id = None
    if center_name == "Amazon" and isinstance(raw_center, dict):
        amazon_id = _metadata(raw_center.get("metadata"), "dataCenterInfo.metadata").get(_AMAZON_ID)
    for candidate in (_field(raw, "instanceId"), amazon_id, host):
        if not _blank(candidate):
            return candidate or ""
    raise InvalidRequest("Missing instanceId")


def _app(raw: _Raw, path_app: str) -> str:
    app = _field(raw, "app")
    _require(app, "Missing appName")
    expected, given = path_app.upper(), (app or "").upper()
    if given != expected:
        raise InvalidRequest(f"Mismatched appName, expecting {expected} but was {given[:_SHOWN]}")
    return given


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def _require(value: str | None, message: str) -> None:
    if _blank(value):
        raise InvalidRequest(message)


def _present(raw: Mapping[str, object], *names: str) -> object:
    """The first of ``names`` given a value: an explicit null counts as not given."""
    return next((raw[name] for name in names if raw.get(name) is not None), None)


def _object(value: object, field: str) -> _Raw:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{field} must be an object")
    return value


def _field(raw: Mapping[str, object], name: str) -> str | None:
    return _string(raw.get(name), name)


def _string(value: object, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidRequest(f"{field} must be a string")


def _integer(value: object, field: str, bounds: tuple[int, int], default: int) -> int:
    """A number or a string of digits (py-eureka-client sends timestamps as strings); never a
    fraction or an exponent, which Eureka's clients could not read back."""
    if value is None:
        return default
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{field} must be an integer")
    low, high = bounds
    if not low <= value <= high:
        raise InvalidRequest(f"{field} must be an integer from {low} to {high}")
    return value


def _status(value: object, default: EurekaStatus) -> EurekaStatus:
    """Eureka's decoder reads a status it does not know as UNKNOWN; any case is taken here."""
    if value is None:
        return default
    return _STATUSES.get(value.strip().upper() if isinstance(value, str) else "", "UNKNOWN")


def _port(value: object, field: str, default_enabled: bool) -> Port:
    """``{"$": 8080, "@enabled": "true"}`` with number and flag as numbers, booleans or
    strings; a plain number is an enabled port (Eureka refuses it; eureka-js-client's README
    shows it)."""
    shape = value if isinstance(value, dict) else {"$": value, "@enabled": True}
    if shape.get("$") is None:
        raise InvalidRequest(f"Missing {field}")
    number = _integer(shape["$"], f"{field}.$", _PORT_NUMBER, 0)
    return Port(number, _enabled(shape.get("@enabled"), f"{field}.@enabled", default_enabled))


def _secure_port(value: object) -> Port:
    if value is None:
        return Port(DEFAULT_SECURE_PORT, enabled=False)
    return _port(value, "securePort", default_enabled=False)


def _enabled(value: object, field: str, default: bool) -> bool:
    if value is None or isinstance(value, bool):
        return default if value is None else value
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a boolean")
    try:
        return parse_flag(value, default)
    except InvalidFlag as exc:
        raise InvalidRequest(f"{field} {exc}") from exc


def _center_name(value: object) -> DataCenterName | None:
    """The data centre's name in Eureka's spelling, any case taken; None when there is no
    data centre or no name (refused later, in Eureka's order), refused when it is unknown."""
    if value is None:
        return None
    name = _string(_object(value, "dataCenterInfo").get("name"), "dataCenterInfo.name")
    if _blank(name):
        return None
    known = _DATA_CENTERS.get((name or "").strip().lower())
    if known is None:
        raise InvalidRequest(
            f"dataCenterInfo name {(name or '')[:_SHOWN]!r} is not one of "
            f"{', '.join(_DATA_CENTERS.values())}"
        )
    return known


def _data_center(value: object, name: DataCenterName | None, instance_id: str) -> DataCenter:
    """Only Amazon's data centre carries metadata (Spring Cloud's client fails on any other
    that does): another's is dropped. Amazon's gets ``instance-id`` if it lacks one, as in
    Eureka."""
    if value is None:
        raise InvalidRequest("Missing dataCenterInfo")
    if name is None:
        raise InvalidRequest("Missing dataCenterInfo Name")
    if name != "Amazon":
        return DataCenter(name)
    metadata = _metadata(
        _object(value, "dataCenterInfo").get("metadata"), "dataCenterInfo.metadata"
    )
    if _blank(metadata.get(_AMAZON_ID)):
        metadata[_AMAZON_ID] = instance_id
    return DataCenter(name, metadata)


def _lease(value: object) -> LeaseInfo:
    """Eureka's defaults stand in for an interval that is missing or not positive."""
    if value is None:
        return LeaseInfo()
    fields = _object(value, "leaseInfo")
    renewal = _integer(
        fields.get("renewalIntervalInSecs"), "leaseInfo.renewalIntervalInSecs", _JAVA_INT, 0
    )
    duration = _integer(fields.get("durationInSecs"), "leaseInfo.durationInSecs", _JAVA_INT, 0)
    return LeaseInfo(
        renewal_interval=renewal if renewal > 0 else DEFAULT_RENEWAL_INTERVAL,
        duration=duration if duration > 0 else DEFAULT_DURATION,
    )


def _metadata(value: object, field: str) -> dict[str, str]:
    """Entries as given, less Java's ``@class`` marker and explicit nulls. A number or boolean
    is kept as its JSON text, as Eureka's decoder keeps it (it reads every value's token text);
    the registry's own rules for keys and values apply after this."""
    if value is None:
        return {}
    entries = _object(value, field)
    return {
        key: _metadata_value(item, f"{field}.{key[:_SHOWN]}")
        for key, item in entries.items()
        if key != "@class" and item is not None
    }


def _metadata_value(value: object, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    raise InvalidRequest(f"{field} must be a string")


# Writing the registry's answers -----------------------------------------------------------


@dataclass(frozen=True)
class _Metadata:
    """Entries whose keys are a client's: XML escapes them into element names."""

    entries: Mapping[str, str]


# A JSON-shaped tree: ``@name`` keys are XML attributes, ``$`` an element's text beside them,
# a list an element repeated under its key's name.
_Tree: TypeAlias = "str | int | _Metadata | list[_Tree] | dict[str, _Tree]"


def render_applications(apps: Applications, fmt: Format) -> bytes:
    """A full registry, a delta or a VIP's answer: ``application`` is a list even when empty
    (Spring Cloud's client requires the key and the array)."""
    tree: dict[str, _Tree] = {
        "versions__delta": apps.versions_delta,
        "apps__hashcode": apps.apps_hashcode,
        "application": [_application(app) for app in apps.applications],
    }
    return _encode("applications", tree, fmt)


def render_application(app: Application, fmt: Format) -> bytes:
    return _encode("application", _application(app), fmt)


def render_instance(instance: EurekaInstance, fmt: Format) -> bytes:
    return _encode("instance", _instance_tree(instance), fmt)


def rendered_size(instance: EurekaInstance) -> int:
    """The bytes ``instance`` takes in an answer, in the larger of the two formats: XML
    writes ``&`` and quotes in five or six bytes each, JSON a control character in six."""
    return max(len(render_instance(instance, fmt)) for fmt in _FORMATS)


def _application(app: Application) -> dict[str, _Tree]:
    return {"name": app.name, "instance": [_instance_tree(i) for i in app.instances]}


def _instance_tree(instance: EurekaInstance) -> dict[str, _Tree]:
    """Eureka's fields in Eureka's order (``InstanceInfoSerializer``), and no other: ``sid``,
    ``appGroupName`` and ``asgName`` are never set here, so never written."""
    tree: dict[str, _Tree] = {
        "instanceId": instance.instance_id,
        "hostName": instance.host_name,
        "app": instance.app,
        "ipAddr": instance.ip_addr,
        "status": instance.status,
        "overriddenStatus": instance.overridden_status,
        "port": _port_tree(instance.port),
        "securePort": _port_tree(instance.secure_port),
        "countryId": instance.country_id,
        "dataCenterInfo": _data_center_tree(instance.data_center),
        "leaseInfo": _lease_tree(instance.lease),
        "metadata": _Metadata(instance.metadata)
        if instance.metadata
        else {"@class": _EMPTY_MAP_CLASS},
    }
    tree.update(_optional_fields(instance))
    tree["isCoordinatingDiscoveryServer"] = "false"  # true only for Eureka's own server
    # Strings in Eureka's JSON (numbers in leaseInfo); in XML, the same digits either way.
    tree["lastUpdatedTimestamp"] = str(instance.last_updated_ms)
    tree["lastDirtyTimestamp"] = str(instance.last_dirty_ms)
    if instance.action_type is not None:
        tree["actionType"] = instance.action_type
    return tree


def _optional_fields(instance: EurekaInstance) -> dict[str, _Tree]:
    fields = {
        "homePageUrl": instance.home_page_url,
        "statusPageUrl": instance.status_page_url,
        "healthCheckUrl": instance.health_check_url,
        "secureHealthCheckUrl": instance.secure_health_check_url,
        "vipAddress": instance.vip_address,
        "secureVipAddress": instance.secure_vip_address,
    }
    return {name: value for name, value in fields.items() if value is not None}


def _port_tree(port: Port) -> dict[str, _Tree]:
    return {"$": port.number, "@enabled": str(port.enabled).lower()}


def _data_center_tree(center: DataCenter) -> dict[str, _Tree]:
    if center.name != "Amazon":
        return {"@class": _DEFAULT_CLASS, "name": center.name}
    return {"@class": _AMAZON_CLASS, "name": center.name, "metadata": _Metadata(center.metadata)}


def _lease_tree(lease: LeaseInfo) -> dict[str, _Tree]:
    return {
        "renewalIntervalInSecs": lease.renewal_interval,
        "durationInSecs": lease.duration,
        "registrationTimestamp": lease.registration_ms,
        "lastRenewalTimestamp": lease.last_renewal_ms,
        "evictionTimestamp": lease.eviction_ms,
        "serviceUpTimestamp": lease.service_up_ms,
    }


def _encode(root: str, tree: dict[str, _Tree], fmt: Format) -> bytes:
    if fmt == "json":
        return _json_bytes({root: tree})
    return "\n".join(_xml_lines(root, tree, 0)).encode("utf-8")


# JSON: Jackson's compact output, non-ASCII as UTF-8.


def _json_bytes(tree: _Tree) -> bytes:
    text = json.dumps(tree, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    # A lone surrogate (from a "\ud800" escape in a JSON body) has no UTF-8 form: it is always
    # inside a JSON string, where backslashreplace writes it as the same valid escape.
    return text.encode("utf-8", "backslashreplace")


def _json_default(value: object) -> object:
    if isinstance(value, _Metadata):
        return dict(value.entries)
    raise TypeError(f"{type(value).__name__} is not part of Eureka's JSON")


# XML: XStream's pretty printer (two-space indent, no declaration, no final newline).

_XML_NAMES = {"overriddenStatus": "overriddenstatus"}
_XML_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;", "\r": "&#xd;"}
)
# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_lines(name: str, value: _Tree, depth: int) -> Iterator[str]:
    if isinstance(value, list):
        for item in value:
            yield from _xml_lines(name, item, depth)
        return
    pad, tag = "  " * depth, _XML_NAMES.get(name, name)
    if isinstance(value, _Metadata):
        yield from _xml_metadata_lines(tag, value, pad)
    elif isinstance(value, dict):
        yield from _xml_element_lines(tag, value, depth)
    else:
        yield f"{pad}<{tag}>{_xml_text(value)}</{tag}>"


def _xml_element_lines(tag: str, fields: dict[str, _Tree], depth: int) -> Iterator[str]:
    pad = "  " * depth
    attributes = "".join(
        f' {key[1:]}="{_xml_text(value)}"' for key, value in fields.items() if key.startswith("@")
    )
    if "$" in fields:
        yield f"{pad}<{tag}{attributes}>{_xml_text(fields['$'])}</{tag}>"
        return
    children = {k: v for k, v in fields.items() if not k.startswith("@") and k != "$"}
    if not children:
        yield f"{pad}<{tag}{attributes}/>"
        return
    yield f"{pad}<{tag}{attributes}>"
    for key, value in children.items():
        yield from _xml_lines(key, value, depth + 1)
    yield f"{pad}</{tag}>"


def _xml_metadata_lines(tag: str, metadata: _Metadata, pad: str) -> Iterator[str]:
    """An empty key can be no element name at all: it is left out of XML."""
    names = {key: _escape_name(key) for key in metadata.entries if key}
    if not names:
        yield f'{pad}<{tag} class="{_EMPTY_MAP_CLASS}"/>'
        return
    yield f"{pad}<{tag}>"
    for key, name in names.items():
        yield f"{pad}  <{name}>{_xml_text(metadata.entries[key])}</{name}>"
    yield f"{pad}</{tag}>"


def _xml_text(value: _Tree) -> str:
    """Escaped as XStream escapes (quotes and carriage returns too, so a value reads back
    unchanged); a character XML cannot carry becomes U+FFFD rather than breaking the
    document."""
    return _NOT_XML.sub("\ufffd", str(value)).translate(_XML_ESCAPES)


# Metadata keys as element names, XStream's way (XmlFriendlyNameCoder): "$" is "_-", "_" is
# "__", and a character no name may hold there is "_." and its four hex digits ("a/b" is
# "a_.002fb", "1st" is "_.0031st"). XStream keeps ":" and the non-ASCII name characters; they
# are encoded here too, since a namespace-aware reader (py-eureka-client's ElementTree)
# refuses an unbound prefix, and XStream decodes the encoded form all the same.
_ESCAPED = re.compile(r"_(?:(_)|(-)|\.([0-9a-fA-F]{4}))")


def _escape_name(key: str) -> str:
    return "".join(_escape_char(char, first=index == 0) for index, char in enumerate(key))


def _escape_char(char: str, first: bool) -> str:
    if char == "$":
        return "_-"
    if char == "_":
        return "__"
    if char.isascii() and (char.isalpha() or (not first and (char.isdigit() or char in ".-"))):
        return char
    units = char.encode("utf-16-be", "surrogatepass")
    return "".join(f"_.{units[i] << 8 | units[i + 1]:04x}" for i in range(0, len(units), 2))


def _unescape_name(name: str) -> str:
    decoded = _ESCAPED.sub(_unescaped, name)
    # Characters beyond U+FFFF were written as two UTF-16 halves: join them again.
    return decoded.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")


def _unescaped(match: re.Match[str]) -> str:
    if match[1]:
        return "_"
    if match[2]:
        return "$"
    return chr(int(match[3], 16))
