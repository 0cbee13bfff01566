"""Per-service CORS: the document part, its problems, and the answers to browsers."""

from __future__ import annotations

from typing import Any

import fastjsonschema
import pytest

from chalicelib.exposure import cors
from chalicelib.exposure.cors import (
    CORS_SCHEMA,
    MAX_AGE_SECONDS,
    MAX_HEADERS,
    MAX_ORIGIN_LENGTH,
    MAX_ORIGINS,
    MAX_QUOTED,
    PREFLIGHT_VARY,
    CorsRules,
    Preflight,
)
from lambdamesh_routing.forwarding import METHODS

APP = "https://app.example.com"
validate = fastjsonschema.compile(CORS_SCHEMA)


def refused_by_schema(doc: dict[str, Any]) -> bool:
    try:
        validate(doc)
    except fastjsonschema.JsonSchemaValueException:
        return True
    return False


def rules(**fields: Any) -> CorsRules:
    return cors.from_json({"allow_origins": [APP], **fields})


def asking(
    origin: str | None = APP, method: str | None = "PUT", names: str | None = None
) -> dict[str, str]:
    """The headers of a preflight: only those given."""
    found = {"Origin": origin, "Access-Control-Request-Method": method}
    found["Access-Control-Request-Headers"] = names
    return {key: value for key, value in found.items() if value is not None}


# The document part


def test_the_schema_accepts_the_design_example() -> None:
    doc = {
        "allow_origins": [APP],
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["Content-Type", "Authorization"],
        "expose_headers": [],
        "allow_credentials": False,
        "max_age_seconds": 600,
    }
    assert not refused_by_schema(doc)
    assert cors.problems(doc) == []


def test_the_schema_accepts_every_limit_at_its_edge() -> None:
    doc = {
        "allow_origins": [f"https://a{i}.example.com" for i in range(MAX_ORIGINS)],
        "allow_headers": [f"X-H{i}" for i in range(MAX_HEADERS)],
        "expose_headers": [f"X-H{i}" for i in range(MAX_HEADERS)],
        "allow_methods": list(METHODS),
        "max_age_seconds": MAX_AGE_SECONDS,
    }
    assert not refused_by_schema(doc)
    assert not refused_by_schema({"allow_origins": [APP], "max_age_seconds": 0})


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"allow_origins": []},
        {"allow_origins": [APP], "allow_cookies": True},
        {"allow_origins": [f"https://a{i}.example.com" for i in range(MAX_ORIGINS + 1)]},
        {"allow_origins": [APP, APP]},
        {"allow_origins": [""]},
        {"allow_origins": ["https://" + "a" * MAX_ORIGIN_LENGTH]},
        {"allow_origins": [APP], "allow_methods": ["TRACE"]},
        {"allow_origins": [APP], "allow_methods": ["get"]},
        {"allow_origins": [APP], "allow_headers": [f"X-H{i}" for i in range(MAX_HEADERS + 1)]},
        {"allow_origins": [APP], "expose_headers": [f"X-H{i}" for i in range(MAX_HEADERS + 1)]},
        {"allow_origins": [APP], "allow_headers": ["X Custom"]},
        {"allow_origins": [APP], "expose_headers": ["X-Custom:"]},
        {"allow_origins": [APP], "allow_headers": ["X-A", "X-A"]},
        {"allow_origins": [APP], "allow_credentials": "true"},
        {"allow_origins": [APP], "max_age_seconds": -1},
        {"allow_origins": [APP], "max_age_seconds": MAX_AGE_SECONDS + 1},
        {"allow_origins": [APP], "max_age_seconds": 1.5},
    ],
)
def test_the_schema_refuses_shapes_and_sizes_out_of_bounds(doc: dict[str, Any]) -> None:
    assert refused_by_schema(doc)


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        APP,
        "http://127.0.0.1:5173",
        "http://localhost:3000",
        "http://[::1]:8080",
        "https://[2001:db8::1]",
        "https://xn--bcher-kva.example",
        "http://app.example.com:443",
        "capacitor://localhost",
    ],
)
def test_origins_as_browsers_serialize_them_raise_no_problem(origin: str) -> None:
    assert cors.problems({"allow_origins": [origin]}) == []


@pytest.mark.parametrize(
    ("origin", "problem"),
    [
        ("HTTPS://App.example.com", "is not lower case: browsers send origins in lower case"),
        ("https://*.example.com", "holds a wildcard: list each origin, or '*' alone"),
        ("app.example.com", "is not an origin: write scheme://host[:port]"),
        ("1https://app.example.com", "is not an origin: write scheme://host[:port]"),
        ("https://app.example.com/", "has a path, query or fragment"),
        ("https://app.example.com/app", "has a path, query or fragment"),
        ("https://app.example.com?", "has a path, query or fragment"),
        ("https://app.example.com#top", "has a path, query or fragment"),
        ("https://me@app.example.com", "holds a user name"),
        ("https://[::1", "is not an origin: write scheme://host[:port]"),
        ("https://app.example.com:1:2", "is not an origin: write scheme://host[:port]"),
        ("https://", "has no valid host name"),
        ("https://-app.example.com", "has no valid host name"),
        ("https://app..example.com", "has no valid host name"),
        ("https://app.example.com.", "has no valid host name"),
        ("https://app_1.example.com", "has no valid host name"),
        ("https://256.0.0.1", "has no valid host: write an IPv4 address as four numbers 0-255"),
        ("https://127.1", "has no valid host: write an IPv4 address as four numbers 0-255"),
        ("https://[zz::1]", "has no valid host: the part in brackets is not an IPv6 address"),
        ("https://[fe80::1%25eth0]", "has a zone in its IPv6 address"),
        ("https://[0:0:0:0:0:0:0:1]", "is not spelled as browsers send it: write [::1]"),
        ("https://app.example.com:", "has no valid port: write a number 1-65535"),
        ("https://app.example.com:0", "has no valid port"),
        ("https://app.example.com:65536", "has no valid port"),
        ("https://app.example.com:0443", "has no valid port"),
        ("https://app.example.com:x", "has no valid port"),
        ("https://app.example.com:443", "names the default port 443, which browsers leave out"),
        ("http://app.example.com:80", "names the default port 80"),
    ],
)
def test_each_malformed_origin_is_reported_with_its_place_value_and_reason(
    origin: str, problem: str
) -> None:
    found = cors.problems({"allow_origins": [APP, origin]})
    assert len(found) == 1
    assert found[0].startswith(f"cors.allow_origins[1] {origin!r} {problem}")


def test_the_default_port_problem_says_what_to_remove() -> None:
    [found] = cors.problems({"allow_origins": ["https://app.example.com:443"]})
    assert found.endswith("remove ':443'")


def test_any_origin_with_credentials_is_refused_and_says_why() -> None:
    found = cors.problems({"allow_origins": ["*"], "allow_credentials": True})
    assert found == [
        "cors.allow_origins '*' cannot go with allow_credentials true: browsers refuse "
        "credentials for any origin; list the origins instead"
    ]


def test_any_origin_without_credentials_and_credentials_with_listed_origins_are_fine() -> None:
    assert cors.problems({"allow_origins": ["*"], "allow_credentials": False}) == []
    assert cors.problems({"allow_origins": [APP], "allow_credentials": True}) == []


@pytest.mark.parametrize("field", ["allow_headers", "expose_headers"])
def test_a_wildcard_header_name_is_refused(field: str) -> None:
    found = cors.problems({"allow_origins": [APP], field: ["X-A", "*"]})
    assert found == [f"cors.{field} '*' is not supported: list the header names"]


def test_every_problem_is_reported_not_only_the_first() -> None:
    doc = {
        "allow_origins": ["*", "HTTPS://A.COM"],
        "allow_credentials": True,
        "allow_headers": ["*"],
    }
    assert len(cors.problems(doc)) == 3


def test_absent_fields_take_their_defaults_and_to_json_fills_every_field() -> None:
    assert cors.to_json(cors.from_json({"allow_origins": [APP]})) == {
        "allow_origins": [APP],
        "allow_methods": ["GET", "HEAD", "POST"],
        "allow_headers": [],
        "expose_headers": [],
        "allow_credentials": False,
        "max_age_seconds": 600,
    }


def test_a_full_document_round_trips_and_its_json_passes_its_own_checks() -> None:
    doc = {
        "allow_origins": [APP, "http://127.0.0.1:5173"],
        "allow_methods": ["GET", "PUT"],
        "allow_headers": ["Content-Type", "X-Request-Id"],
        "expose_headers": ["X-Trace"],
        "allow_credentials": True,
        "max_age_seconds": 30,
    }
    again = cors.to_json(cors.from_json(doc))
    assert again == doc
    assert not refused_by_schema(again)
    assert cors.problems(again) == []


# Preflights


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", asking()),
        ("OPTIONS", asking(origin=None)),
        ("OPTIONS", asking(origin="")),
        ("OPTIONS", asking(method=None)),
        ("OPTIONS", asking(method="")),
        ("OPTIONS", {}),
    ],
)
def test_a_request_that_is_not_a_preflight_gets_none(method: str, headers: dict[str, str]) -> None:
    assert cors.preflight(rules(allow_methods=["PUT"]), method, headers) is None


def test_an_allowed_preflight_answers_every_allow_header() -> None:
    given = rules(allow_methods=["GET", "PUT"], allow_headers=["Content-Type", "X-Request-Id"])
    answer = cors.preflight(given, "OPTIONS", asking(names="Content-Type, X-Request-Id"))
    assert answer == Preflight(
        allowed=True,
        headers={
            "Access-Control-Allow-Origin": APP,
            "Access-Control-Allow-Methods": "GET, PUT",
            "Access-Control-Allow-Headers": "content-type, x-request-id",
            "Access-Control-Max-Age": "600",
            "Vary": PREFLIGHT_VARY,
        },
    )


def test_the_vary_of_a_preflight_names_each_header_the_answer_depends_on() -> None:
    assert PREFLIGHT_VARY == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def test_request_header_names_and_listed_names_compare_without_case() -> None:
    headers = {
        "origin": APP,
        "access-control-request-method": "PUT",
        "access-control-request-headers": "x-request-id",
    }
    answer = cors.preflight(
        rules(allow_methods=["PUT"], allow_headers=["X-REQUEST-ID"]), "OPTIONS", headers
    )
    assert answer is not None and answer.allowed


def test_credentials_are_allowed_in_the_preflight_answer_when_set() -> None:
    answer = cors.preflight(
        rules(allow_methods=["PUT"], allow_credentials=True), "OPTIONS", asking()
    )
    assert answer is not None
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    assert answer.headers["Access-Control-Allow-Origin"] == APP


def test_without_credentials_the_preflight_answer_does_not_mention_them() -> None:
    answer = cors.preflight(rules(allow_methods=["PUT"]), "OPTIONS", asking())
    assert answer is not None and answer.allowed
    assert "Access-Control-Allow-Credentials" not in answer.headers


@pytest.mark.parametrize("origin", ["https://elsewhere.example", "null"])
def test_any_origin_is_answered_with_a_star(origin: str) -> None:
    given = cors.from_json({"allow_origins": ["*"], "allow_methods": ["PUT"]})
    answer = cors.preflight(given, "OPTIONS", asking(origin=origin))
    assert answer is not None and answer.allowed
    assert answer.headers["Access-Control-Allow-Origin"] == "*"


def test_an_unlisted_origin_is_refused_with_no_allow_header() -> None:
    answer = cors.preflight(
        rules(allow_methods=["PUT"]), "OPTIONS", asking(origin="https://evil.example")
    )
    assert answer == Preflight(
        allowed=False,
        headers={"Vary": PREFLIGHT_VARY},
        reason="the origin 'https://evil.example' is not allowed to call this service",
    )


def test_an_origin_must_match_exactly_not_by_prefix_or_case() -> None:
    given = rules(allow_methods=["PUT"])
    for origin in (APP + ".evil.example", APP + ":443", "https://APP.example.com", APP + "/"):
        answer = cors.preflight(given, "OPTIONS", asking(origin=origin))
        assert answer is not None and not answer.allowed, origin


def test_an_unlisted_method_is_refused() -> None:
    answer = cors.preflight(rules(allow_methods=["PUT"]), "OPTIONS", asking(method="DELETE"))
    assert answer is not None and not answer.allowed
    assert answer.reason == "the method 'DELETE' is not allowed from other origins"
    assert answer.headers == {"Vary": PREFLIGHT_VARY}


def test_methods_compare_with_their_case_as_fetch_does() -> None:
    answer = cors.preflight(rules(allow_methods=["PATCH"]), "OPTIONS", asking(method="patch"))
    assert answer is not None and not answer.allowed
    assert answer.reason == "the method 'patch' is not allowed from other origins"


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_a_safelisted_method_needs_no_listing(method: str) -> None:
    answer = cors.preflight(rules(allow_methods=["PUT"]), "OPTIONS", asking(method=method))
    assert answer is not None and answer.allowed


def test_an_unlisted_request_header_is_refused_by_name() -> None:
    given = rules(allow_methods=["PUT"], allow_headers=["X-A"])
    answer = cors.preflight(given, "OPTIONS", asking(names="x-a, X-Secret"))
    assert answer is not None and not answer.allowed
    assert answer.reason == "the header 'x-secret' is not allowed from other origins"


@pytest.mark.parametrize("name", ["Accept", "accept-language", "Content-Language"])
def test_a_safelisted_request_header_needs_no_listing_and_is_echoed(name: str) -> None:
    answer = cors.preflight(rules(allow_methods=["PUT"]), "OPTIONS", asking(names=name))
    assert answer is not None and answer.allowed
    assert answer.headers["Access-Control-Allow-Headers"] == name.lower()


def test_content_type_in_a_preflight_must_be_listed() -> None:
    """A browser names Content-Type only for a value such as application/json."""
    answer = cors.preflight(rules(allow_methods=["PUT"]), "OPTIONS", asking(names="content-type"))
    assert answer is not None and not answer.allowed
    assert answer.reason == "the header 'content-type' is not allowed from other origins"


def test_a_request_header_list_with_blanks_and_empty_items_is_read_as_names() -> None:
    assert cors.requested_headers(" X-A ,, \tx-b\t,") == ["x-a", "x-b"]
    assert cors.requested_headers(None) == []
    assert cors.requested_headers("") == []


def test_a_preflight_asking_no_headers_gets_no_allow_headers_field() -> None:
    answer = cors.preflight(rules(allow_methods=["PUT"]), "OPTIONS", asking(names=""))
    assert answer is not None and answer.allowed
    assert "Access-Control-Allow-Headers" not in answer.headers


def test_an_empty_method_list_allows_only_safelisted_methods_and_sends_no_methods_field() -> None:
    given = rules(allow_methods=[])
    answer = cors.preflight(given, "OPTIONS", asking(method="POST"))
    assert answer is not None and answer.allowed
    assert "Access-Control-Allow-Methods" not in answer.headers
    refused = cors.preflight(given, "OPTIONS", asking(method="PUT"))
    assert refused is not None and not refused.allowed


def test_max_age_is_answered_as_configured_even_zero() -> None:
    answer = cors.preflight(rules(allow_methods=["PUT"], max_age_seconds=0), "OPTIONS", asking())
    assert answer is not None
    assert answer.headers["Access-Control-Max-Age"] == "0"


def test_a_long_client_value_is_cut_in_the_refusal() -> None:
    origin = "https://" + "a" * 500 + ".example"
    answer = cors.preflight(rules(), "OPTIONS", asking(origin=origin, method="GET"))
    assert answer is not None
    assert repr(origin[:MAX_QUOTED]) in answer.reason
    assert origin not in answer.reason


# Ordinary answers


def test_an_answer_to_a_listed_origin_allows_it_and_varies_on_origin() -> None:
    assert cors.answer_headers(rules(), APP) == {
        "Access-Control-Allow-Origin": APP,
        "Vary": "Origin",
    }


def test_an_answer_with_credentials_and_exposed_headers_says_both() -> None:
    given = rules(allow_credentials=True, expose_headers=["X-Trace", "RateLimit"])
    assert cors.answer_headers(given, APP) == {
        "Access-Control-Allow-Origin": APP,
        "Vary": "Origin",
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": "X-Trace, RateLimit",
    }


@pytest.mark.parametrize("origin", [None, "", "https://evil.example"])
def test_an_answer_to_no_or_an_unlisted_origin_only_varies_on_origin(origin: str | None) -> None:
    assert cors.answer_headers(rules(allow_credentials=True), origin) == {"Vary": "Origin"}


def test_an_answer_for_any_origin_says_star() -> None:
    given = cors.from_json({"allow_origins": ["*"]})
    assert (
        cors.answer_headers(given, "https://anyone.example")["Access-Control-Allow-Origin"] == "*"
    )


def test_a_header_is_found_whatever_the_case_of_its_name() -> None:
    assert cors.header({"ORIGIN": APP}, "Origin") == APP
    assert cors.header({"x": "y"}, "Origin") is None
