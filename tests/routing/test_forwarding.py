"""Reverse-proxy header rules, both ways, and the request id that ties the two legs together."""

from __future__ import annotations

import io
import re
from http.client import HTTPMessage, parse_headers

import pytest

from lambdamesh_routing.forwarding import (
    CLIENT_CLAIMS,
    HOP_BY_HOP,
    REQUEST_ID_HEADER,
    CheckedReader,
    Headers,
    bare_cr,
    chunk_size,
    downstream_headers,
    header_problem,
    joined_field,
    quote_path,
    quote_target,
    request_id,
    rewrite_location,
    upstream_headers,
)

FRESH_ID = re.compile(r"[0-9a-f]{32}")


def upstream(
    incoming: dict[str, str], client_ip: str | None = "203.0.113.7", proto: str = "https"
) -> dict[str, str]:
    return upstream_headers(incoming, client_ip=client_ip, proto=proto, request_id="req-1")


def lowered(headers: dict[str, str] | Headers) -> dict[str, object]:
    return {name.lower(): value for name, value in headers.items()}


# request_id


@pytest.mark.parametrize(
    "incoming",
    ["abc-123", "Root=1-5759e988-bd862e3fe1be46a994272793", "a+b=c:d.e_f", "v1.2.3", "x" * 128],
)
def test_a_sane_client_request_id_is_kept(incoming: str) -> None:
    assert request_id(incoming) == incoming


@pytest.mark.parametrize(
    "incoming",
    [None, "", "x" * 129, "has space", "line\nbreak", "tab\there", "caf\u00e9"],
)
def test_a_missing_or_insane_request_id_is_replaced_by_a_fresh_uuid(incoming: str | None) -> None:
    assert FRESH_ID.fullmatch(request_id(incoming))


def test_a_request_id_ending_in_a_line_break_is_replaced() -> None:
    # It is echoed in a response header and sent upstream: a line break would split headers.
    assert FRESH_ID.fullmatch(request_id("abc\n"))


@pytest.mark.parametrize("incoming", ["a/b", "/etc/passwd", "..", "a..b", "../x", "x.."])
def test_a_request_id_that_could_walk_a_path_is_replaced(incoming: str) -> None:
    # Upstreams put request ids into log file names and URLs.
    assert FRESH_ID.fullmatch(request_id(incoming))


def test_fresh_request_ids_differ() -> None:
    assert request_id(None) != request_id(None)


# Upstream: client -> instance


def test_hop_by_hop_headers_are_not_sent_upstream() -> None:
    incoming = {
        "Connection": "keep-alive",
        "Keep-Alive": "timeout=5",
        "Proxy-Authenticate": "Basic",
        "Proxy-Authorization": "Basic dXNlcjpwYXNz",
        "Proxy-Connection": "keep-alive",
        "TE": "trailers",
        "Trailer": "Expires",
        "Transfer-Encoding": "chunked",
        "Upgrade": "h2c",
        "Accept": "application/json",
    }
    assert {name.lower() for name in incoming} - {"accept"} == HOP_BY_HOP

    sent = lowered(upstream(incoming))

    assert not HOP_BY_HOP & set(sent)
    assert sent["accept"] == "application/json"


def test_headers_named_in_connection_are_not_sent_upstream() -> None:
    incoming = {
        "connection": "close, X-Internal-Hop ,x-other",
        "X-Internal-Hop": "1",
        "X-Other": "2",
    }

    sent = lowered(upstream(incoming))

    assert "x-internal-hop" not in sent
    assert "x-other" not in sent


def test_host_and_content_length_are_left_to_the_upstream_client() -> None:
    sent = upstream({"Host": "api.example.com", "Content-Length": "12", "Accept": "*/*"})

    assert "host" not in lowered(sent)
    assert "content-length" not in lowered(sent)


def test_end_to_end_headers_keep_their_name_and_value() -> None:
    incoming = {"Accept": "*/*", "Authorization": "Bearer t", "X-Custom": "v", "Cookie": "a=b"}

    sent = upstream(incoming)

    assert {name: sent[name] for name in incoming} == incoming


def test_the_client_address_starts_the_forwarded_for_chain() -> None:
    assert upstream({})["X-Forwarded-For"] == "203.0.113.7"


def test_the_client_address_is_appended_to_an_existing_forwarded_for_chain() -> None:
    sent = upstream({"x-forwarded-for": "198.51.100.1, 198.51.100.2"})

    assert sent["X-Forwarded-For"] == "198.51.100.1, 198.51.100.2, 203.0.113.7"
    assert "x-forwarded-for" not in sent


def test_a_chain_already_ending_with_the_client_address_is_not_doubled() -> None:
    sent = upstream({"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})

    assert sent["X-Forwarded-For"] == "198.51.100.1, 203.0.113.7"


def test_the_chain_always_ends_with_the_real_client_address() -> None:
    # A client may put any address it likes into the chain; the upstream trusts only the last
    # hop, which must be the address the gateway saw.
    sent = upstream({"X-Forwarded-For": "203.0.113.7, 10.0.0.1"})

    assert sent["X-Forwarded-For"] == "203.0.113.7, 10.0.0.1, 203.0.113.7"


def test_without_a_client_address_the_chain_is_passed_on_unchanged() -> None:
    assert upstream({"X-Forwarded-For": "198.51.100.1"}, client_ip=None)["X-Forwarded-For"] == (
        "198.51.100.1"
    )
    assert "x-forwarded-for" not in lowered(upstream({}, client_ip=None))


def test_forwarded_proto_and_host_are_set_when_absent() -> None:
    sent = upstream({"Host": "api.example.com"}, proto="https")

    assert sent["X-Forwarded-Proto"] == "https"
    assert sent["X-Forwarded-Host"] == "api.example.com"


def test_forwarded_proto_and_port_set_by_api_gateway_are_kept() -> None:
    # API Gateway replaces a client's with its own, so the event's are the edge's.
    sent = upstream({"x-forwarded-proto": "http", "x-forwarded-port": "8443"}, proto="https")

    assert lowered(sent)["x-forwarded-proto"] == "http"
    assert lowered(sent)["x-forwarded-port"] == "8443"
    assert len([name for name in sent if name.lower() == "x-forwarded-proto"]) == 1
    assert len([name for name in sent if name.lower() == "x-forwarded-port"]) == 1


@pytest.mark.parametrize(
    "claimed", ["gopher", "HTTPS", "http, https", "https ", "javascript:alert(1)", ""]
)
def test_a_forwarded_proto_no_edge_would_set_is_rebuilt(claimed: str) -> None:
    sent = upstream({"X-Forwarded-Proto": claimed}, proto="https")

    assert [(k, v) for k, v in sent.items() if k.lower() == "x-forwarded-proto"] == [
        ("X-Forwarded-Proto", "https")
    ]


@pytest.mark.parametrize("claimed", ["0", "65536", "443, 80", "08", "-1", "http", ""])
def test_a_forwarded_port_no_edge_would_set_is_dropped(claimed: str) -> None:
    assert "x-forwarded-port" not in lowered(upstream({"X-Forwarded-Port": claimed}))


def test_without_a_forwarded_port_none_is_made_up() -> None:
    assert "x-forwarded-port" not in lowered(upstream({}))


def test_without_a_trusted_edge_the_callers_forwarded_proto_and_port_are_not_believed() -> None:
    incoming = {"X-Forwarded-Proto": "https", "x-forwarded-port": "443", "Accept": "*/*"}

    sent = upstream_headers(
        incoming, client_ip="10.0.1.7", proto="http", request_id="req-1", trusted_edge=False
    )

    assert [(k, v) for k, v in sent.items() if k.lower() == "x-forwarded-proto"] == [
        ("X-Forwarded-Proto", "http")
    ]
    assert "x-forwarded-port" not in lowered(sent)
    assert sent["Accept"] == "*/*"


@pytest.mark.parametrize(
    "name",
    [
        "X_Forwarded_For",
        "x_real_ip",
        "Transfer_Encoding",
        "Content_Length",
        "X_Request_Id",
        "X_Forwarded_Host",
        "X_Forwarded_Proto",
        "X_Forwarded_Port",
        "X-Forwarded_Prefix",
        "X_Original_URL",
        "Proxy_Authorization",
    ],
)
def test_a_dropped_header_spelled_with_underscores_is_dropped_too(name: str) -> None:
    # WSGI servers, and the frameworks on them, read X_Forwarded_For as X-Forwarded-For.
    sent = upstream({name: "claimed", "Host": "api.example"})

    assert name not in sent
    assert "claimed" not in sent.values()
    assert sent["X-Forwarded-For"] == "203.0.113.7"


def test_a_header_named_in_connection_is_dropped_whichever_separator_either_uses() -> None:
    sent = upstream({"Connection": "x_hop, X-Other", "X-Hop": "1", "X_Other": "2"})

    assert not {"x-hop", "x_other"} & set(lowered(sent))


def test_other_headers_with_underscores_are_passed_on() -> None:
    sent = upstream({"X_Custom": "v", "api_key": "k"})

    assert (sent["X_Custom"], sent["api_key"]) == ("v", "k")


@pytest.mark.parametrize(
    "name",
    [
        "X-Real-IP",
        "True-Client-IP",
        "X-Client-IP",
        "CF-Connecting-IP",
        "Fastly-Client-IP",
        "X-Cluster-Client-IP",
        "X-Originating-IP",
    ],
)
def test_a_client_cannot_claim_an_address_beside_the_forwarded_for_chain(name: str) -> None:
    sent = upstream({name: "10.0.0.1", name.lower(): "10.0.0.2"})

    assert name.lower() not in lowered(sent)
    assert sent["X-Forwarded-For"] == "203.0.113.7"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Original-URL", "/admin"),
        ("X-Original-URI", "/admin"),
        ("X-Rewrite-URL", "/admin"),
        ("X-Original-Host", "evil.example"),
        ("X-Host", "evil.example"),
        ("X-Forwarded-Server", "evil.example"),
        ("X-Forwarded-Prefix", "/evil"),
        ("X-Forwarded-Scheme", "http"),
        ("X-Forwarded-Ssl", "on"),
        ("Front-End-Https", "on"),
        ("X-Url-Scheme", "http"),
    ],
)
def test_a_client_cannot_choose_the_url_the_upstream_believes_was_called(
    name: str, value: str
) -> None:
    sent = upstream({"Host": "api.example", name: value})

    assert name.lower() not in lowered(sent)
    assert value not in sent.values()


def test_every_client_claim_is_dropped_whatever_its_case() -> None:
    incoming = {name.upper(): "claimed" for name in CLIENT_CLAIMS}

    assert not CLIENT_CLAIMS & set(lowered(upstream(incoming)))


def test_a_client_cannot_choose_the_host_the_upstream_believes_it_was_called_on() -> None:
    # API Gateway sets no X-Forwarded-Host, so a client's would reach the upstream verbatim.
    sent = upstream(
        {
            "Host": "api.example",
            "X-Forwarded-Host": "evil.example",
            "Forwarded": "host=evil.example;proto=http",
        }
    )

    assert lowered(sent)["x-forwarded-host"] == "api.example"
    assert len([name for name in sent if name.lower() == "x-forwarded-host"]) == 1
    assert "forwarded" not in lowered(sent)


def test_without_a_host_there_is_no_forwarded_host() -> None:
    assert "x-forwarded-host" not in lowered(upstream({}))


def test_the_request_id_is_sent_upstream_in_place_of_the_clients() -> None:
    sent = upstream({"x-request-id": "client-chosen"})

    assert sent[REQUEST_ID_HEADER] == "req-1"
    assert [name for name in sent if name.lower() == "x-request-id"] == [REQUEST_ID_HEADER]


def test_the_incoming_headers_are_not_modified() -> None:
    incoming = {"Connection": "close", "X-Forwarded-For": "198.51.100.1"}

    upstream(incoming)

    assert incoming == {"Connection": "close", "X-Forwarded-For": "198.51.100.1"}


# Downstream: instance -> client


def test_hop_by_hop_and_recomputed_headers_are_not_returned_to_the_client() -> None:
    answer = [
        ("Connection", "keep-alive, X-Upstream-Hop"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "h2c"),
        ("Trailer", "Expires"),
        ("X-Upstream-Hop", "1"),
        ("Content-Length", "42"),
        ("Content-Type", "application/json"),
    ]

    returned = downstream_headers(answer, "req-1")

    assert returned == {"Content-Type": "application/json", REQUEST_ID_HEADER: "req-1"}


def test_a_header_named_in_any_of_several_connection_headers_is_dropped() -> None:
    answer = [("Connection", "x-a"), ("X-A", "1"), ("connection", "X-B"), ("X-B", "2")]

    assert downstream_headers(answer, "req-1") == {REQUEST_ID_HEADER: "req-1"}


def test_the_request_id_is_returned_to_the_client_in_place_of_the_upstreams() -> None:
    returned = downstream_headers([("x-request-id", "upstream-own")], "req-1")

    assert returned == {REQUEST_ID_HEADER: "req-1"}


def test_repeated_upstream_headers_are_kept_as_a_list_in_order() -> None:
    answer = [
        ("Set-Cookie", "a=1; Path=/"),
        ("Content-Type", "text/plain"),
        ("Set-Cookie", "b=2; HttpOnly"),
        ("Set-Cookie", "c=3"),
    ]

    returned = downstream_headers(answer, "req-1")

    assert returned["Set-Cookie"] == ["a=1; Path=/", "b=2; HttpOnly", "c=3"]
    assert returned["Content-Type"] == "text/plain"


def test_a_header_sent_once_stays_a_plain_string() -> None:
    assert downstream_headers([("Set-Cookie", "a=1")], "req-1")["Set-Cookie"] == "a=1"


def test_the_answer_to_a_head_keeps_the_length_a_get_would_have() -> None:
    upstream = [("Content-Length", "357"), ("Content-Type", "application/json")]

    assert downstream_headers(upstream, "rid", head=True)["Content-Length"] == "357"
    assert "Content-Length" not in downstream_headers(upstream, "rid")


def test_the_answer_to_a_head_keeps_its_length_even_where_connection_names_it() -> None:
    upstream = [("Connection", "content-length, x-a"), ("Content-Length", "357"), ("X-A", "1")]

    assert downstream_headers(upstream, "rid", head=True) == {
        "Content-Length": "357",
        REQUEST_ID_HEADER: "rid",
    }


def test_the_headers_a_connection_header_names_are_not_sent_upstream() -> None:
    sent = upstream({"Connection": "close, X-Secret", "X-Secret": "1", "X_Secret": "2", "A": "3"})

    assert lowered(sent).keys() == {"a", "x-forwarded-for", "x-forwarded-proto", "x-request-id"}


# Redirects kept under the gateway's prefix

PREFIX = "/prod/api/v1/orders/live"


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/login", f"{PREFIX}/login"),
        ("/login?next=%2Fcart#top", f"{PREFIX}/login?next=%2Fcart#top"),
        ("http://10.0.1.5:8080/login", f"{PREFIX}/login"),
        ("https://10.0.1.5:8080", f"{PREFIX}/"),
        ("//10.0.1.5:8080/x", f"{PREFIX}/x"),
        ("next-page", "next-page"),  # relative to the current path: already under the prefix
        ("https://accounts.example.com/login", "https://accounts.example.com/login"),
        ("http://10.0.1.5:9090/login", "http://10.0.1.5:9090/login"),
        ("//evil.example/x", "//evil.example/x"),
    ],
)
def test_redirects_to_the_upstream_itself_are_rewritten_under_the_prefix(
    location: str, expected: str
) -> None:
    assert rewrite_location(location, PREFIX, "10.0.1.5:8080") == expected


@pytest.mark.parametrize("location", ["http://[oops/x", "//[", "http://[::1"])
def test_a_location_that_is_no_url_is_left_as_the_upstream_gave_it(location: str) -> None:
    assert rewrite_location(location, PREFIX, "10.0.1.5:8080") == location


def test_the_upstream_named_with_its_default_port_counts_as_itself() -> None:
    authorities = ("10.0.1.5", "10.0.1.5:80")

    assert rewrite_location("http://10.0.1.5:80/login", PREFIX, authorities) == f"{PREFIX}/login"
    assert rewrite_location("http://10.0.1.5/login", PREFIX, authorities) == f"{PREFIX}/login"


# The header section as parsed: what a proxy may pass on


def parsed(section: bytes) -> HTTPMessage:
    return parse_headers(io.BytesIO(section + b"\r\n"))


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        (b"X-A: 1\r\n X-Injected: 2\r\n", "obsolete line folding in header X-A"),
        (b"X-A: 1\r\n\tX-Injected: 2\r\n", "obsolete line folding in header X-A"),
        (b" X-Injected: 2\r\nX-A: 1\r\n", "obsolete line folding before the first header"),
        (b"X A: 1\r\nContent-Length: 5\r\n", "malformed header line"),
        (b"X-A: a\x00b\r\n", "control character 0x00 in header X-A"),
        (b"Content-Length: 5\x0b\r\n", "control character 0x0b in header Content-Length"),
        (b"X-A: \x1fb\r\n", "control character 0x1f in header X-A"),
        (b"X-A: a\x7f\r\n", "control character 0x7f in header X-A"),
    ],
)
def test_folded_lines_control_characters_and_lines_that_are_no_header_are_refused(
    section: bytes, problem: str
) -> None:
    assert header_problem(parsed(section)) == problem


@pytest.mark.parametrize(
    "section",
    [
        b"",
        b"X-A: a\tb c\r\n",
        b"X-A: caf\xe9 \xa0\x85\xff\r\n",  # obs-text: latin-1 bytes, allowed in values
        b"Content-Type: multipart/form-data; boundary=xyz\r\n",
    ],
    ids=["empty", "tab-and-space", "obs-text", "multipart-type"],
)
def test_visible_characters_spaces_tabs_and_obs_text_are_passed_on(section: bytes) -> None:
    assert header_problem(parsed(section)) is None


def test_an_upstream_cannot_widen_its_service_workers_scope_to_the_whole_gateway() -> None:
    answer = [("Service-Worker-Allowed", "/"), ("service-worker-allowed", "/api/")]

    assert downstream_headers(answer, "req-1") == {REQUEST_ID_HEADER: "req-1"}


# Lines: bare CRs and chunk sizes


@pytest.mark.parametrize(
    ("line", "bare"),
    [
        (b"X-A: b\r\n", False),
        (b"X-A: b\n", False),
        (b"\r\n", False),
        (b"", False),
        (b"X-A: b\rX-B: c\r\n", True),
        (b"X-A: b\r\r\n", True),
        (b"GET / HTTP/1.1\r", True),
        (b"\rX-A: b\n", True),
    ],
)
def test_a_cr_anywhere_but_before_the_final_lf_is_bare(line: bytes, bare: bool) -> None:
    assert bare_cr(line) is bare


def test_the_checked_reader_notes_a_bare_cr_and_passes_every_byte_on() -> None:
    reader = CheckedReader(io.BufferedReader(io.BytesIO(b"A: 1\r\nB: 2\rC: 3\r\n\r\nbody\r\rrest")))

    assert reader.readline() == b"A: 1\r\n"
    assert not reader.bare_cr
    assert parse_headers(reader)["B"] == "2"  # what the standard library makes of it
    assert reader.bare_cr
    assert reader.read1(4) + reader.read() == b"body\r\rrest"


def test_a_bare_cr_read_by_a_body_read_is_not_a_line() -> None:
    reader = CheckedReader(io.BufferedReader(io.BytesIO(b"a\rb\r\n")))

    assert reader.read(3) == b"a\rb"
    assert reader.readline() == b"\r\n"
    assert not reader.bare_cr


@pytest.mark.parametrize(
    ("line", "size"),
    [
        (b"5\r\n", 5),
        (b"1a\r\n", 26),
        (b"0\r\n", 0),
        (b"00FF\r\n", 255),
        (b"5 \t\r\n", 5),
        (b"5;ext\r\n", 5),
        (b'5 ; a="b c"; d\r\n', 5),
        (b"5;caf\xe9\r\n", 5),
        (b"fffffffffffffff\r\n", 0xFFFFFFFFFFFFFFF),
    ],
)
def test_a_chunk_size_line_is_hex_digits_spaces_tabs_extensions_and_crlf(
    line: bytes, size: int
) -> None:
    assert chunk_size(line) == size


@pytest.mark.parametrize(
    "line",
    [
        b"5\n",
        b"5",
        b"5\r\r\n",
        b" 5\r\n",
        b"5\x0b\r\n",
        b"5\x0c\r\n",
        b"+5\r\n",
        b"-1\r\n",
        b"0x5\r\n",
        b"\r\n",
        b"5;a\rb\r\n",
        b"5;a\x00\r\n",
        b"1000000000000000\r\n",
        b"\xd9\xa5\r\n",
    ],
)
def test_any_other_chunk_size_line_is_malformed(line: bytes) -> None:
    assert chunk_size(line) is None


# joined_field


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("Accept", ["text/html", "*/*"], "text/html, */*"),
        ("X-Forwarded-For", ["203.0.113.9"], "203.0.113.9"),
        ("Cookie", ["a=1", "b=2"], "a=1; b=2"),
        ("cookie", ["a=1", "b=2; c=3"], "a=1; b=2; c=3"),
    ],
)
def test_a_repeated_field_is_joined_with_commas_and_cookies_with_semicolons(
    name: str, values: list[str], expected: str
) -> None:
    assert joined_field(name, values) == expected


# Paths and targets, quoted where they must be and no more


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("", ""),
        ("a/b", "a/b"),
        ("a/b;v=1/:@!$&'()*+,=-._~", "a/b;v=1/:@!$&'()*+,=-._~"),
        ("a b", "a%20b"),
        ("a%2Fb", "a%2Fb"),
        ("a%2fb%zz", "a%2fb%25zz"),
        ("100%", "100%25"),
        ("caf\u00e9", "caf%C3%A9"),
        ("a?b#c", "a%3Fb%23c"),
        ('a"b<c>', "a%22b%3Cc%3E"),
    ],
)
def test_a_path_is_quoted_only_where_it_must_be(path: str, sent: str) -> None:
    assert quote_path(path) == sent


def test_a_target_keeps_its_delimiters_and_drops_its_fragment() -> None:
    assert quote_target("/a b/c?x=1&y=a b+c#frag") == "/a%20b/c?x=1&y=a%20b+c"
    assert quote_target("/caf\u00e9", encoding="latin-1") == "/caf%E9"
