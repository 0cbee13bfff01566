"""A policy's mesh fields, ``mtls`` and ``intentions``: what ``parse_policy`` takes, and each
limit it refuses with the field and the rule in the message."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.errors import InvalidRequest, PayloadTooLarge
from chalicelib.validation import MAX_POLICY_JSON, parse_policy
from lambdamesh_routing.policy import IntentionRule, Intentions, Policy, from_json


def intentions(*rules: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"intentions": {**fields, "rules": list(rules)}}


def allow(**fields: Any) -> dict[str, Any]:
    return {"from": "billing", "action": "allow", **fields}


def refusal(body: dict[str, Any]) -> str:
    with pytest.raises(InvalidRequest) as caught:
        parse_policy("orders", body)
    return caught.value.message


@pytest.mark.parametrize("mode", ["strict", "permissive", None])
def test_mtls_is_strict_permissive_or_the_stages(mode: str | None) -> None:
    assert parse_policy("orders", {"mtls": mode}).mtls == mode


def test_a_policy_without_the_mesh_fields_leaves_both_to_the_stage() -> None:
    policy = parse_policy("orders", {})

    assert (policy.mtls, policy.intentions) == (None, None)
    assert policy.to_json()["mtls"] is None
    assert policy.to_json()["intentions"] is None


@pytest.mark.parametrize("mode", ["on", "STRICT", True, "mtls"])
def test_any_other_mode_is_refused(mode: object) -> None:
    assert refusal({"mtls": mode}).startswith("invalid body: mtls must be one of")


def test_intentions_are_read_in_order_with_every_field() -> None:
    body = intentions(
        {"from": "_gateway", "action": "allow", "methods": ["GET", "HEAD"], "path_prefix": "/p"},
        {"from": "*", "action": "deny"},
        default="deny",
    )

    policy = parse_policy("orders", body)

    assert policy.intentions == Intentions(
        default="deny",
        rules=(
            IntentionRule("_gateway", "allow", ("GET", "HEAD"), "/p"),
            IntentionRule("*", "deny"),
        ),
    )


def test_a_policy_round_trips_through_its_document() -> None:
    body = {
        "mtls": "strict",
        **intentions(allow(methods=["POST"], path_prefix="/charges/"), default=None),
    }

    document = parse_policy("orders", body).to_json()

    assert document["intentions"] == {
        "default": None,
        "rules": [
            {"from": "billing", "action": "allow", "methods": ["POST"], "path_prefix": "/charges/"}
        ],
    }
    assert parse_policy("orders", document) == from_json(document)
    assert parse_policy("orders", document).to_json() == document


@pytest.mark.parametrize("default", ["allow", "deny", None])
def test_the_intentions_default_is_allow_deny_or_the_stages(default: str | None) -> None:
    policy = parse_policy("orders", intentions(default=default))

    assert policy.intentions == Intentions(default=default)


def test_intentions_may_be_null_or_hold_no_rules() -> None:
    assert parse_policy("orders", {"intentions": None}).intentions is None
    assert parse_policy("orders", {"intentions": {}}) == Policy(intentions=Intentions())


def test_sixty_four_rules_are_accepted_and_sixty_five_refused() -> None:
    rules = [allow()] * 64

    assert len(parse_policy("orders", intentions(*rules)).intentions.rules) == 64  # type: ignore[union-attr]
    assert refusal(intentions(*rules, allow())) == (
        "invalid body: intentions.rules must contain less than or equal to 64 items"
    )


def test_a_prefix_of_256_characters_is_accepted_and_257_refused() -> None:
    longest = "/" + "a" * 255

    accepted = parse_policy("orders", intentions(allow(path_prefix=longest)))

    assert accepted.intentions.rules[0].path_prefix == longest  # type: ignore[union-attr]
    assert refusal(intentions(allow(), allow(path_prefix=longest + "a"))).startswith(
        "invalid body: intentions.rules[1].path_prefix"
    )


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            {"from": "Billing", "action": "allow"},
            "intentions.rules[1].from is not valid: use a service name (1-63 characters of "
            "a-z, 0-9 and '-'), '_gateway' (the gateway) or '*' (any caller)",
        ),
        ({"from": "gateway", "action": "permit"}, "intentions.rules[1].action must be one of"),
        ({"from": "a_b", "action": "allow"}, "intentions.rules[1].from is not valid"),
        ({"from": "*", "action": "allow", "methods": ["get"]}, "rules[1].methods[0] must be one"),
        ({"from": "*", "action": "allow", "methods": ["TRACE"]}, "rules[1].methods[0] must be"),
        ({"from": "*", "action": "allow", "methods": []}, "rules[1].methods must contain at"),
        ({"from": "*", "action": "allow", "methods": ["GET", "GET"]}, "must contain unique"),
        ({"from": "*", "action": "allow", "methods": "GET"}, "rules[1].methods must be array"),
        ({"from": "*", "action": "allow", "path_prefix": "admin"}, "rules[1].path_prefix is not"),
        ({"from": "*", "action": "allow", "path_prefix": "/a?b"}, "without spaces, '?' or '#'"),
        ({"from": "*", "action": "allow", "path_prefix": "/a#b"}, "without spaces, '?' or '#'"),
        ({"from": "*", "action": "allow", "path_prefix": "/a\nb"}, "printable ASCII"),
        ({"from": "*", "action": "allow", "path_prefix": "/a\x00"}, "printable ASCII"),
        ({"from": "*", "action": "allow", "path_prefix": None}, "path_prefix must be string"),
        ({"from": "*", "action": "allow", "path_prefix": "/a/../b"}, "write it as '/b'"),
        ({"from": "*", "action": "allow", "path_prefix": "/a%2fb"}, "read in different ways"),
        ({"from": "*", "action": "allow", "host": "x"}, "rules[1] must not contain {'host'}"),
        ({"action": "allow"}, "intentions.rules[1] must contain ['from'] properties"),
        ({"from": "*"}, "intentions.rules[1] must contain ['action'] properties"),
    ],
)
def test_each_bad_rule_is_refused_naming_the_rule_the_field_and_what_is_wrong(
    rule: dict[str, Any], expected: str
) -> None:
    assert expected in refusal(intentions(allow(), rule))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"intentions": {"default": "maybe"}}, "intentions.default must be one of"),
        ({"intentions": {"defaults": "deny"}}, "intentions must not contain {'defaults'}"),
        ({"intentions": ["allow"]}, "intentions must be object or null"),
        ({"intentions": {"rules": {}}}, "intentions.rules must be array"),
        ({"intention": {}}, "body must not contain {'intention'}"),
    ],
)
def test_a_bad_intentions_object_is_refused(body: dict[str, Any], expected: str) -> None:
    assert expected in refusal(body)


def test_intentions_count_towards_the_policys_size_limit() -> None:
    rules = [allow(path_prefix="/" + "a" * 250)] * 40

    with pytest.raises(PayloadTooLarge, match=f"larger than {MAX_POLICY_JSON} bytes"):
        parse_policy("orders", intentions(*rules))
