"""Input rules of the registry API: names, JSON bodies, registrations and heartbeats."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from chalicelib.errors import HostNotAllowed, InvalidName, InvalidRequest, PayloadTooLarge
from chalicelib.instances import Registration
from chalicelib.validation import (
    MAX_INSTANCE_JSON,
    MAX_JSON_DEPTH,
    MAX_REGISTRY_BODY,
    instance_json_size,
    parse_heartbeat,
    parse_json_body,
    parse_registration,
)
from lambdamesh_routing.hosts import AddressPolicy
from lambdamesh_routing.names import MAX_METADATA_VALUE, check_name

POLICY = AddressPolicy()
NOW = 1_800_000_000.0
VALID = {"version": "v1", "host": "orders.example.com", "port": 8080}


def register(**fields: Any) -> Registration:
    return parse_registration("orders", "i-1", {**VALID, **fields}, POLICY)


def refusal(**fields: Any) -> str:
    with pytest.raises(InvalidRequest) as caught:
        register(**fields)
    return caught.value.message


# check_name


def test_error_codes_are_stable() -> None:
    assert (InvalidName.code, InvalidName.status) == ("invalid_name", 400)
    assert (InvalidRequest.code, InvalidRequest.status) == ("invalid_request", 400)
    assert (PayloadTooLarge.code, PayloadTooLarge.status) == ("payload_too_large", 413)


@pytest.mark.parametrize(
    ("kind", "longest"), [("service", 63), ("version", 32), ("instance_id", 128)]
)
def test_a_name_of_exactly_the_maximum_length_is_accepted_and_one_more_is_refused(
    kind: str, longest: int
) -> None:
    assert check_name(kind, "a" * longest) == "a" * longest
    with pytest.raises(InvalidName):
        check_name(kind, "a" * (longest + 1))


@pytest.mark.parametrize("kind", ["service", "version", "instance_id"])
@pytest.mark.parametrize("value", ["", "Orders", "-orders", "orders-", "or ders", "or/ders"])
def test_names_refuse_emptiness_uppercase_edge_hyphens_and_separators(
    kind: str, value: str
) -> None:
    with pytest.raises(InvalidName):
        check_name(kind, value)


@pytest.mark.parametrize("kind", ["service", "version", "instance_id"])
def test_a_name_with_a_trailing_line_break_is_refused(kind: str) -> None:
    with pytest.raises(InvalidName):
        check_name(kind, "orders\n")


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("service", "orders"),
        ("service", "a"),
        ("service", "order-service-2"),
        ("version", "v1.2.3"),
        ("version", "2024_01-rc1"),
        ("instance_id", "ip-10-0-0-1.ec2.internal"),
        ("instance_id", "4f1c_task-1"),
    ],
)
def test_well_formed_names_are_returned_unchanged(kind: str, value: str) -> None:
    assert check_name(kind, value) == value


@pytest.mark.parametrize("value", ["v1.2", "v_1"])
def test_service_names_refuse_dots_and_underscores_that_versions_allow(value: str) -> None:
    assert check_name("version", value) == value
    with pytest.raises(InvalidName):
        check_name("service", value)


def test_the_name_refusal_says_which_name_and_the_rule() -> None:
    with pytest.raises(InvalidName) as caught:
        check_name("service", "Orders")

    assert "service" in caught.value.message
    assert "'Orders'" in caught.value.message
    assert "1-63 characters" in caught.value.message


def test_the_name_refusal_quotes_at_most_80_characters_of_a_huge_value() -> None:
    with pytest.raises(InvalidName) as caught:
        check_name("instance_id", "X" * 10_000)

    assert "X" * 80 in caught.value.message
    assert "X" * 81 not in caught.value.message


# parse_json_body


@pytest.mark.parametrize("raw", [None, b""])
def test_an_empty_body_is_an_empty_object(raw: bytes | None) -> None:
    assert parse_json_body(raw) == {}


@pytest.mark.parametrize("raw", [None, b"", b" ", b"\r\n\t ", b"\xef\xbb\xbf \n"])
def test_a_required_body_that_is_absent_or_blank_is_refused_naming_what_to_send(
    raw: bytes | None,
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_json_body(raw, required="a routing policy")

    assert caught.value.message == "request body is empty: send a routing policy"


def test_a_required_body_of_an_empty_object_is_a_document() -> None:
    assert parse_json_body(b" {} ", required="a routing policy") == {}


def test_a_required_body_is_still_held_to_the_size_limit() -> None:
    with pytest.raises(PayloadTooLarge):
        parse_json_body(b" " * 11, limit=10, required="a routing policy")


def test_a_json_body_is_decoded() -> None:
    assert parse_json_body(b'{"status": "UP", "n": [1, 2]}') == {"status": "UP", "n": [1, 2]}


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"a": }', b"\xff\xfe\x00"])
def test_a_body_that_is_not_json_is_an_invalid_request(raw: bytes) -> None:
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_json_body(raw)


def test_a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_too_large() -> None:
    padding = MAX_REGISTRY_BODY - len(json.dumps({"pad": ""}))
    at_limit = json.dumps({"pad": "x" * padding}).encode()
    assert len(at_limit) == MAX_REGISTRY_BODY

    assert parse_json_body(at_limit) == {"pad": "x" * padding}
    with pytest.raises(PayloadTooLarge) as caught:
        parse_json_body(at_limit + b" ")
    assert str(MAX_REGISTRY_BODY) in caught.value.message


def test_the_size_limit_is_checked_before_the_body_is_parsed() -> None:
    with pytest.raises(PayloadTooLarge):
        parse_json_body(b"{" * 11, limit=10)


def nested(levels: int, opener: str = "[", closer: str = "]") -> bytes:
    return (opener * levels + closer * levels).encode()


def test_the_nesting_limit_is_32_levels() -> None:
    assert MAX_JSON_DEPTH == 32


@pytest.mark.parametrize(("opener", "closer"), [("[", "]"), ('{"a":', "}")])
def test_a_body_nested_to_the_limit_is_decoded_and_one_level_more_is_refused(
    opener: str, closer: str
) -> None:
    innermost = "[]" if opener == "[" else "{}"
    at_limit = opener * (MAX_JSON_DEPTH - 1) + innermost + closer * (MAX_JSON_DEPTH - 1)
    too_deep = opener + at_limit + closer

    assert parse_json_body(at_limit.encode()) is not None
    with pytest.raises(InvalidRequest, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        parse_json_body(too_deep.encode())


@pytest.mark.parametrize("raw", [nested(8000), b"[" * MAX_REGISTRY_BODY, b'{"a":' * 3000])
def test_thousands_of_nested_brackets_within_the_size_limit_are_an_invalid_request(
    raw: bytes,
) -> None:
    # Python's parser recurses once per level: 8,000 of them were a RecursionError and a 500.
    assert len(raw) <= MAX_REGISTRY_BODY

    with pytest.raises(InvalidRequest, match="deeper than"):
        parse_json_body(raw)


def test_brackets_inside_strings_are_text_and_do_not_count_as_nesting() -> None:
    text = "[{" * MAX_JSON_DEPTH + '\\"' + "]" * MAX_JSON_DEPTH
    raw = json.dumps({"metadata": {"k": text, "q": '\\"[[[['}}).encode()

    assert parse_json_body(raw) == {"metadata": {"k": text, "q": '\\"[[[['}}


def test_a_stray_quote_does_not_hide_the_nesting_before_it() -> None:
    with pytest.raises(InvalidRequest, match="deeper than"):
        parse_json_body(nested(MAX_JSON_DEPTH + 1)[: MAX_JSON_DEPTH + 1] + b'"' + b"]" * 40)


def test_a_utf8_byte_order_mark_is_allowed() -> None:
    assert parse_json_body(b'\xef\xbb\xbf{"status": "UP"}') == {"status": "UP"}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_body_in_another_encoding_than_utf8_is_refused(encoding: str) -> None:
    # Decoded as UTF-8 first, so the nesting scan reads the same characters as the parser.
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_json_body(json.dumps({"status": "UP"}).encode(encoding))


# parse_registration


def test_a_minimal_registration_gets_the_defaults() -> None:
    assert register() == Registration(
        service="orders",
        instance_id="i-1",
        version="v1",
        host="orders.example.com",
        port=8080,
        weight=100,
        zone=None,
        metadata={},
        lease_seconds=30,
        status="UP",
    )


def test_a_full_registration_keeps_every_field() -> None:
    registration = register(
        weight=7,
        zone="eu-west-1a",
        metadata={"git.sha": "abc123", "team/owner": "payments"},
        lease_seconds=60,
        status="DOWN",
    )

    assert (registration.weight, registration.zone, registration.lease_seconds) == (
        7,
        "eu-west-1a",
        60,
    )
    assert registration.metadata == {"git.sha": "abc123", "team/owner": "payments"}
    assert registration.status == "DOWN"


def test_tls_marks_a_sidecars_inbound_port_and_is_false_unless_given() -> None:
    assert register().tls is False
    assert register(tls=True).tls is True
    assert register(tls=False).tls is False


@pytest.mark.parametrize("value", [1, 0, "true", None, {}])
def test_tls_must_be_a_boolean(value: object) -> None:
    assert refusal(tls=value) == "invalid body: tls must be boolean"


def test_the_host_is_normalised() -> None:
    assert register(host="Orders.Example.COM.").host == "orders.example.com"


def test_a_host_the_policy_refuses_is_refused() -> None:
    with pytest.raises(HostNotAllowed, match=re.escape("169.254.169.254")):
        register(host="169.254.169.254")


@pytest.mark.parametrize(
    ("field", "accepted", "refused"),
    [
        ("port", [1, 65535], [0, 65536, -1]),
        ("weight", [1, 1000], [0, 1001]),
        ("lease_seconds", [5, 300], [4, 301]),
    ],
)
def test_integer_fields_accept_their_bounds_and_refuse_one_beyond(
    field: str, accepted: list[int], refused: list[int]
) -> None:
    for value in accepted:
        assert getattr(register(**{field: value}), field) == value
    for value in refused:
        assert field in refusal(**{field: value})


@pytest.mark.parametrize("field", ["port", "weight", "lease_seconds"])
@pytest.mark.parametrize("value", [True, False, "80", None, 80.5])
def test_integer_fields_refuse_booleans_strings_nulls_and_fractions(
    field: str, value: object
) -> None:
    assert field in refusal(**{field: value})


def test_a_port_written_as_a_whole_float_is_stored_as_an_integer() -> None:
    # JSON Schema counts 8080.0 as an integer; the port must still be one, or the address
    # becomes "host:8080.0".
    registration = register(port=8080.0)

    assert type(registration.port) is int
    assert registration.port == 8080


@pytest.mark.parametrize("missing", ["version", "host", "port"])
def test_version_host_and_port_are_required(missing: str) -> None:
    body = {k: v for k, v in VALID.items() if k != missing}

    with pytest.raises(InvalidRequest, match=missing):
        parse_registration("orders", "i-1", body, POLICY)


def test_an_unknown_field_is_refused_by_name() -> None:
    assert "colour" in refusal(colour="blue")


@pytest.mark.parametrize("body", [[], "text", 42, None])
def test_a_body_that_is_not_an_object_is_refused(body: object) -> None:
    with pytest.raises(InvalidRequest):
        parse_registration("orders", "i-1", body, POLICY)


def test_a_version_that_is_not_a_valid_name_is_refused() -> None:
    assert "version" in refusal(version="V1")
    assert "version" in refusal(version="v1\n")


@pytest.mark.parametrize("status", ["up", "SICK", "", 1])
def test_status_is_up_or_down(status: object) -> None:
    assert "status" in refusal(status=status)


def test_zone_may_be_null_but_not_malformed() -> None:
    assert register(zone=None).zone is None
    assert "zone" in refusal(zone="EU West")


def test_metadata_of_32_entries_is_accepted_and_33_refused() -> None:
    entries = {f"k{n}": "v" for n in range(32)}
    assert register(metadata=entries).metadata == entries

    assert "metadata" in refusal(metadata={**entries, "k32": "v"})


def test_a_metadata_value_of_512_characters_is_accepted_and_513_refused() -> None:
    assert register(metadata={"k": "x" * 512}).metadata == {"k": "x" * 512}

    assert "metadata" in refusal(metadata={"k": "x" * 513})


@pytest.mark.parametrize("value", [1, True, None, ["a"], {"a": "b"}])
def test_metadata_values_must_be_strings(value: object) -> None:
    assert "metadata" in refusal(metadata={"k": value})


@pytest.mark.parametrize("key", ["", "has space", "k" * 65, "caf\u00e9", "line\nbreak"])
def test_metadata_keys_must_be_short_and_plain(key: str) -> None:
    assert "metadata" in refusal(metadata={key: "v"})


def test_metadata_must_be_an_object() -> None:
    assert "metadata" in refusal(metadata=["k", "v"])


def test_the_registration_does_not_share_the_callers_metadata_dict() -> None:
    metadata = {"k": "v"}
    registration = register(metadata=metadata)

    metadata["k"] = "changed"

    assert registration.metadata == {"k": "v"}


@pytest.mark.parametrize(
    ("service", "instance_id"), [("Orders", "i-1"), ("orders", "i 1"), ("orders", "")]
)
def test_the_path_names_are_checked_before_the_body(service: str, instance_id: str) -> None:
    with pytest.raises(InvalidName):
        parse_registration(service, instance_id, {"nonsense": True}, POLICY)


LONE_SURROGATES = ["\ud800", "a\udfffb"]


@pytest.mark.parametrize("surrogate", LONE_SURROGATES)
@pytest.mark.parametrize(
    "field",
    [
        "metadata value",
        "metadata key",
        "version",
        "host",
        "zone",
        "status",
        "unknown field",
        "unknown field value",
    ],
)
def test_a_lone_surrogate_in_any_string_of_a_registration_is_refused(
    field: str, surrogate: str
) -> None:
    # DynamoDB refuses to encode it: that was a 503 the sidecar would retry forever.
    bodies: dict[str, dict[str, Any]] = {
        "metadata value": {"metadata": {"k": surrogate}},
        "metadata key": {"metadata": {surrogate: "v"}},
        "version": {"version": surrogate},
        "host": {"host": surrogate},
        "zone": {"zone": surrogate},
        "status": {"status": surrogate},
        "unknown field": {surrogate: "v"},
        "unknown field value": {"note": [surrogate]},
    }

    assert "lone surrogate" in refusal(**bodies[field])


def test_a_lone_surrogate_decoded_from_a_json_escape_is_refused_at_registration() -> None:
    body = parse_json_body(
        b'{"version": "v1", "host": "a.example", "port": 1, "metadata": {"k": "\\ud800"}}'
    )

    with pytest.raises(InvalidRequest, match="lone surrogate"):
        parse_registration("orders", "i-1", body, POLICY)


def test_a_surrogate_pair_is_one_character_and_accepted() -> None:
    body = parse_json_body(
        b'{"version": "v1", "host": "a.example", "port": 1, '
        b'"metadata": {"emoji": "\\ud83d\\ude00"}}'
    )

    assert parse_registration("orders", "i-1", body, POLICY).metadata == {"emoji": "\U0001f600"}


# parse_heartbeat


def test_an_empty_heartbeat_changes_no_status_and_carries_no_figures() -> None:
    assert parse_heartbeat({}, NOW) == (None, None)


@pytest.mark.parametrize("status", ["UP", "DOWN"])
def test_a_heartbeat_may_set_the_status(status: str) -> None:
    assert parse_heartbeat({"status": status}, NOW).status == status


@pytest.mark.parametrize(
    ("body", "field"),
    [({"status": "SICK"}, "status"), ({"lease_seconds": 60}, "lease_seconds"), ([], "object")],
)
def test_a_heartbeat_refuses_anything_else(body: object, field: str) -> None:
    with pytest.raises(InvalidRequest, match=field):
        parse_heartbeat(body, NOW)


@pytest.mark.parametrize("body", [{"status": "\ud800"}, {"\udfff": "UP"}])
def test_a_lone_surrogate_in_a_heartbeat_is_refused(body: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest, match="lone surrogate"):
        parse_heartbeat(body, NOW)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"version": "V1"}, "version is not valid: use 1-32 characters"),
        ({"zone": "EU_WEST"}, "zone is not valid: use 1-64 characters"),
        ({"metadata": {"bad key": "x"}}, "metadata is not valid: use keys of 1-64"),
    ],
)
def test_pattern_refusals_say_the_rule_in_words(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(expected)):
        register(**fields)


# the size of an instance as listed


def metadata_making(size: int) -> dict[str, str]:
    """Metadata with which the registration is exactly ``size`` bytes as listed."""
    metadata = {f"k{n}": "" for n in range(8)}
    room = size - instance_json_size(register(metadata=metadata))
    for key in metadata:
        metadata[key] = "x" * min(room, MAX_METADATA_VALUE)
        room -= len(metadata[key])
    assert room == 0
    return metadata


def test_an_instance_of_exactly_the_size_limit_is_accepted_and_one_byte_more_refused() -> None:
    at_limit = register(metadata=metadata_making(MAX_INSTANCE_JSON))
    assert instance_json_size(at_limit) == MAX_INSTANCE_JSON

    with pytest.raises(PayloadTooLarge) as caught:
        register(metadata=metadata_making(MAX_INSTANCE_JSON + 1))

    assert f"is {MAX_INSTANCE_JSON + 1} bytes" in caught.value.message
    assert f"limit is {MAX_INSTANCE_JSON}" in caught.value.message


def test_the_size_limit_is_four_kib() -> None:
    assert MAX_INSTANCE_JSON == 4096


def test_non_ascii_text_counts_as_escaped_in_the_listing() -> None:
    """700 characters of UTF-8 fit in the body, but list as 4,200 bytes of escapes."""
    metadata = {"a": "\u00e9" * 350, "b": "\u00e9" * 350}
    assert len(json.dumps({**VALID, "metadata": metadata}, ensure_ascii=False).encode()) < 2000

    with pytest.raises(PayloadTooLarge):
        register(metadata=metadata)


def test_the_size_counts_every_field_of_the_registration() -> None:
    small = register()
    listed = {
        "service": "orders",
        "instance_id": "i-1",
        "version": "v1",
        "host": "orders.example.com",
        "port": 8080,
        "weight": 100,
        "zone": None,
        "metadata": {},
        "lease_seconds": 30,
        "status": "UP",
        "task_arn": None,
        "tls": False,
    }

    assert instance_json_size(small) == len(json.dumps(listed, separators=(",", ":")))


@pytest.mark.parametrize("field", ["port", "weight", "lease_seconds"])
def test_an_integer_past_pythons_digit_limit_is_a_bad_request_not_a_crash(field: str) -> None:
    body = f'{{"version": "v1", "host": "10.0.0.1", "port": 80, "{field}": {"1" * 4301}}}'

    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_json_body(body.encode())


# parse_heartbeat: figures

CALLS = {"requests": 120, "errors": 2, "p50_ms": 3.1, "p99_ms": 20.5}
FIGURES = {"seconds": 60.2, "in": CALLS, "out": {**CALLS, "requests": 40, "errors": 0}}


def figures_refusal(**changes: Any) -> str:
    """The message refusing FIGURES with its inbound port's figures changed ("absent": left
    out)."""
    calls = {k: v for k, v in {**CALLS, **changes}.items() if v != "absent"}
    with pytest.raises(InvalidRequest) as caught:
        parse_heartbeat({"figures": {**FIGURES, "in": calls}}, NOW)
    return caught.value.message


def test_a_heartbeats_figures_are_stamped_with_the_registrys_clock() -> None:
    beat = parse_heartbeat({"status": "UP", "figures": FIGURES}, NOW + 0.0004)

    assert beat.status == "UP"
    assert beat.figures is not None
    assert beat.figures.to_json() == {**FIGURES, "reported_at": NOW}


@pytest.mark.parametrize(
    "figures",
    [
        {"seconds": 0},
        {"seconds": 3600, "in": None, "out": None},
        {"seconds": 1, "in": {"requests": 0, "errors": 0, "p50_ms": None, "p99_ms": None}},
        {
            "seconds": 1,
            "out": {
                "requests": 1_000_000_000,
                "errors": 1_000_000_000,
                "p50_ms": 0,
                "p99_ms": 900_000,
            },
        },
    ],
)
def test_figures_at_their_bounds_are_accepted(figures: dict[str, Any]) -> None:
    beat = parse_heartbeat({"figures": figures}, NOW)

    assert beat.figures is not None
    assert beat.figures.seconds == figures["seconds"]


@pytest.mark.parametrize(
    ("figures", "message"),
    [
        ({"seconds": -0.001}, "figures.seconds must be bigger than or equal to 0"),
        ({"seconds": 3600.001}, "figures.seconds must be smaller than or equal to 3600"),
        ({"seconds": "60"}, "figures.seconds must be number"),
        ({"in": CALLS}, "figures must contain ['seconds'] properties"),
        ({"seconds": 1, "inbound": CALLS}, "figures must not contain {'inbound'} properties"),
        ([], "figures must be object or null"),
    ],
)
def test_figures_outside_their_bounds_are_refused(figures: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_heartbeat({"figures": figures}, NOW)

    assert caught.value.message == f"invalid body: {message}"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"requests": -1}, "figures.in.requests must be bigger than or equal to 0"),
        (
            {"requests": 1_000_000_001},
            "figures.in.requests must be smaller than or equal to 1000000000",
        ),
        ({"requests": 1.5}, "figures.in.requests must be integer"),
        ({"requests": True}, "figures.in.requests must be integer"),
        ({"errors": -1}, "figures.in.errors must be bigger than or equal to 0"),
        ({"p50_ms": -0.001}, "figures.in.p50_ms must be bigger than or equal to 0"),
        ({"p99_ms": 900_000.001}, "figures.in.p99_ms must be smaller than or equal to 900000"),
        ({"p99_ms": "20"}, "figures.in.p99_ms must be number or null"),
        ({"p50_ms": "absent"}, "figures.in must contain ['p50_ms'] properties"),
        ({"bytes": 10}, "figures.in must not contain {'bytes'} properties"),
    ],
)
def test_a_ports_figures_outside_their_bounds_are_refused(
    changes: dict[str, Any], message: str
) -> None:
    assert figures_refusal(**changes) == f"invalid body: {message}"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"errors": 121}, "figures.in.errors (121) is more than its requests (120)"),
        ({"p50_ms": None}, "figures.in counts 120 requests: give p50_ms and p99_ms"),
        ({"p99_ms": None}, "figures.in counts 120 requests: give p50_ms and p99_ms"),
        (
            {"requests": 0, "errors": 0},
            "figures.in counts no request: p50_ms and p99_ms must be null",
        ),
        ({"p50_ms": 20.6}, "figures.in.p50_ms is above its p99_ms"),
    ],
)
def test_figures_that_contradict_themselves_are_refused(
    changes: dict[str, Any], message: str
) -> None:
    assert figures_refusal(**changes) == f"invalid body: {message}"


def test_the_outbound_ports_figures_are_checked_alike() -> None:
    figures = {**FIGURES, "out": {**CALLS, "errors": 121}}

    with pytest.raises(InvalidRequest, match=re.escape("figures.out.errors (121) is more")):
        parse_heartbeat({"figures": figures}, NOW)
