"""Intentions: the first matching rule decides, a default when none does, and a path spelt
another way reaches neither past a deny rule nor into an allow rule."""

from __future__ import annotations

import pytest

from lambdamesh_routing.intentions import (
    FROM_RULE,
    decide,
    normalize_path,
    prefix_problem,
    under,
    well_formed,
)
from lambdamesh_routing.policy import IntentionRule, Intentions


def rule(
    source: str,
    action: str,
    methods: tuple[str, ...] | None = None,
    path_prefix: str | None = None,
) -> IntentionRule:
    return IntentionRule(source, action, methods, path_prefix)


# The gateway may read /public; orders may do anything but DELETE; nothing may reach /admin
# (the deny rule comes first); everyone else falls to the default.
ORDERED = Intentions(
    default="deny",
    rules=(
        rule("*", "deny", path_prefix="/admin"),
        rule("_gateway", "allow", ("GET", "HEAD"), "/public"),
        rule("orders", "deny", ("DELETE",)),
        rule("orders", "allow"),
    ),
)


@pytest.mark.parametrize(
    ("caller", "method", "path", "allowed", "index"),
    [
        ("orders", "GET", "/admin/users", False, 0),
        ("_gateway", "GET", "/admin", False, 0),
        ("_gateway", "GET", "/public/page", True, 1),
        ("_gateway", "HEAD", "/public", True, 1),
        ("_gateway", "POST", "/public/page", False, None),
        ("_gateway", "GET", "/private", False, None),
        ("orders", "DELETE", "/items/1", False, 2),
        ("orders", "POST", "/items", True, 3),
        ("billing", "GET", "/items", False, None),
        (None, "GET", "/public", False, None),
        (None, "GET", "/admin", False, 0),
    ],
)
def test_rules_are_tried_in_order_and_the_first_that_matches_decides(
    caller: str | None, method: str, path: str, allowed: bool, index: int | None
) -> None:
    decision = decide(ORDERED, "allow", caller, method, path)

    assert (decision.allowed, decision.rule) == (allowed, index)


def test_the_intentions_default_decides_before_the_stages() -> None:
    own = decide(Intentions(default="deny"), "allow", "orders", "GET", "/")
    stage = decide(Intentions(), "deny", "orders", "GET", "/")
    allowed = decide(Intentions(default="allow"), "deny", "orders", "GET", "/")

    assert (own.allowed, own.rule) == (False, None)
    assert "the service's default denies" in own.reason
    assert (stage.allowed, stage.rule) == (False, None)
    assert "the stage's default denies" in stage.reason
    assert allowed.allowed


@pytest.mark.parametrize(("default", "allowed"), [("allow", True), ("deny", False)])
def test_without_intentions_the_stage_default_decides(default: str, allowed: bool) -> None:
    decision = decide(None, default, None, "GET", "/")

    assert (decision.allowed, decision.rule) == (allowed, None)


def test_a_stage_default_that_is_neither_word_denies() -> None:
    assert not decide(None, "Allow", "orders", "GET", "/").allowed


@pytest.mark.parametrize(
    ("source", "caller", "matches"),
    [
        ("*", "orders", True),
        ("*", "_gateway", True),
        ("*", None, True),
        ("_gateway", "_gateway", True),
        ("_gateway", "orders", False),
        ("_gateway", None, False),
        ("orders", "orders", True),
        ("orders", "orders-v2", False),
        ("orders", None, False),
        ("orders", "_gateway", False),
    ],
)
def test_from_matches_a_service_the_gateway_or_any_caller_identity_or_not(
    source: str, caller: str | None, matches: bool
) -> None:
    decision = decide(Intentions(rules=(rule(source, "allow"),)), "deny", caller, "GET", "/")

    assert decision.allowed is matches
    assert decision.rule == (0 if matches else None)


@pytest.mark.parametrize(
    ("method", "matches"),
    [("GET", True), ("POST", True), ("get", True), ("Post", True), ("PUT", False)],
)
def test_methods_are_compared_in_upper_case(method: str, matches: bool) -> None:
    """Frameworks that upper-case the method (Werkzeug) would serve ``delete`` as DELETE."""
    intentions = Intentions(rules=(rule("*", "deny", ("GET", "POST")),))

    assert decide(intentions, "allow", "orders", method, "/").allowed is not matches


def test_a_method_that_upper_cases_into_one_only_outside_ascii_is_another_method() -> None:
    intentions = Intentions(rules=(rule("*", "allow", ("POST",)),))

    assert not decide(intentions, "deny", "orders", "po\u017ft", "/").allowed  # long s


@pytest.mark.parametrize(
    ("prefix", "path", "matches"),
    [
        ("/admin", "/admin", True),
        ("/admin", "/admin/", True),
        ("/admin", "/admin/users", True),
        ("/admin", "/administrator", False),
        ("/admin", "/adm", False),
        ("/admin/", "/admin/users", True),
        ("/admin/", "/admin", False),
        ("/", "/anything/at/all", True),
        ("/api/v1", "/api/v1/items", True),
        ("/api/v1", "/api/v10", False),
    ],
)
def test_path_prefixes_match_on_segment_boundaries(prefix: str, path: str, matches: bool) -> None:
    assert under(path, prefix) is matches
    intentions = Intentions(rules=(rule("*", "allow", path_prefix=prefix),))
    assert decide(intentions, "deny", "orders", "GET", path).allowed is matches


@pytest.mark.parametrize(
    ("target", "normal"),
    [
        ("/admin", "/admin"),
        ("/public/../admin", "/admin"),
        ("/public/%2e%2e/admin", "/admin"),
        ("/public/%2E%2E/admin", "/admin"),
        ("/%61dmin", "/admin"),
        ("/%41DMIN", "/ADMIN"),
        ("//admin", "/admin"),
        ("/admin//users", "/admin/users"),
        ("/./admin", "/admin"),
        ("/admin/.", "/admin/"),
        ("/admin/x/..", "/admin/"),
        ("/../../admin", "/admin"),
        ("/admin?x=1", "/admin"),
        ("/public?/admin", "/public"),
        ("/public#/admin", "/public"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a%7eb%2D", "/a~b-"),
        ("/%25%32%46", "/%252F"),
        ("/", "/"),
    ],
)
def test_paths_are_compared_in_one_normal_form(target: str, normal: str) -> None:
    assert normalize_path(target) == normal


@pytest.mark.parametrize(
    "target",
    [
        "/admin%2fx",
        "/admin%2Fx",
        "/admin%5cx",
        "/admin%5Cx",
        "/admin\\x",
        "/admin\x00.png",
        "/admin%00.png",
        "/a//../admin",
        "?/admin",
        "",
        "*",
        "http://orders/admin",
        "admin",
    ],
)
def test_paths_apps_read_in_different_ways_have_no_normal_form(target: str) -> None:
    assert normalize_path(target) is None


DENY_ADMIN = Intentions(
    rules=(rule("*", "deny", path_prefix="/admin"), rule("*", "allow")),
)
ALLOW_PUBLIC = Intentions(default="deny", rules=(rule("*", "allow", path_prefix="/public"),))


@pytest.mark.parametrize(
    "path",
    [
        "/admin",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/%61dmin",
        "//admin",
        "/./admin",
        "/admin/",
        "/admin%2fusers",
        "/admin%2Fusers",
        "/admin%5cusers",
        "/admin\\users",
        "/admin\x00",
        "/admin%00",
        "/x//../admin",
        "http://orders/admin",
        "/admin;x",
        "/..;/admin",
        "/public/..;/admin",
    ],
)
def test_no_spelling_of_a_denied_path_slips_past_the_deny_rule(path: str) -> None:
    decision = decide(DENY_ADMIN, "allow", "billing", "GET", path)

    assert (decision.allowed, decision.rule) == (False, 0)


@pytest.mark.parametrize(
    "path",
    [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public%2f..%2fadmin",
        "/public\\..\\admin",
        "/public%5c..%5cadmin",
        "/public/x//../../admin",
        "/public\x00/../admin",
        "?/public",
        "/PUBLIC",
        "/publicity",
        "/public/..;/admin",
        "/public;/../admin",
    ],
)
def test_no_spelling_of_another_path_slips_into_the_allow_rule(path: str) -> None:
    decision = decide(ALLOW_PUBLIC, "allow", "billing", "GET", path)

    assert (decision.allowed, decision.rule) == (False, None)


@pytest.mark.parametrize("path", ["/public", "/%70ublic/x", "/public//x", "/x/../public?/admin"])
def test_other_spellings_of_an_allowed_path_are_allowed(path: str) -> None:
    assert decide(ALLOW_PUBLIC, "deny", "billing", "GET", path).allowed


def test_a_head_is_decided_as_the_get_it_stands_for() -> None:
    """Apps serve a HEAD with their GET handler: a rule on GET covers it, both ways."""
    no_get = Intentions(rules=(rule("*", "deny", methods=("GET",)), rule("*", "allow")))
    assert not decide(no_get, "allow", "billing", "HEAD", "/x").allowed
    assert not decide(no_get, "allow", "billing", "head", "/x").allowed
    only_get = Intentions(default="deny", rules=(rule("*", "allow", methods=("GET",)),))
    assert decide(only_get, "deny", "billing", "HEAD", "/x").allowed
    assert not decide(only_get, "deny", "billing", "POST", "/x").allowed
    # A rule on HEAD alone says nothing of GET.
    only_head = Intentions(default="deny", rules=(rule("*", "allow", methods=("HEAD",)),))
    assert not decide(only_head, "deny", "billing", "GET", "/x").allowed


def test_the_path_is_case_sensitive() -> None:
    assert decide(DENY_ADMIN, "allow", "billing", "GET", "/ADMIN").allowed
    assert decide(DENY_ADMIN, "allow", "billing", "GET", "/Admin/users").allowed


def test_a_path_with_no_normal_form_still_satisfies_rules_without_a_path() -> None:
    intentions = Intentions(default="deny", rules=(rule("orders", "allow", ("GET",)),))

    assert decide(intentions, "deny", "orders", "GET", "/a%2Fb").allowed


def test_the_reason_names_the_rule_and_the_caller_never_the_path() -> None:
    path = "/admin/" + "x" * 10_000

    denied = decide(DENY_ADMIN, "allow", "billing", "GET", path)
    anonymous = decide(ALLOW_PUBLIC, "allow", None, "GET", path)

    assert denied.reason == "intentions.rules[0] denies billing"
    assert anonymous.reason == (
        "no intention matched a caller without an identity: the service's default denies"
    )
    assert "x" * 20 not in denied.reason + anonymous.reason
    assert len(decide(None, "allow", "y" * 10_000, "GET", path).reason) < 200


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("/admin", None),
        ("/", None),
        ("/api/v1/", None),
        ("/caf%C3%A9", None),
        ("admin", "printable ASCII"),
        ("/admin?x", "printable ASCII"),
        ("/admin#x", "printable ASCII"),
        ("/ad min", "printable ASCII"),
        ("/caf\u00e9", "printable ASCII"),
        ("/admin\x7f", "printable ASCII"),
        ("/" + "a" * 256, "printable ASCII"),
        ("/a/../admin", "write it as '/admin'"),
        ("//admin", "write it as '/admin'"),
        ("/%61dmin", "write it as '/admin'"),
        ("/caf%c3%a9", "write it as '/caf%C3%A9'"),
        ("/admin%2Fx", "apps read in different ways"),
        ("/admin\\x", "apps read in different ways"),
    ],
)
def test_a_path_prefix_must_be_in_the_normal_form(prefix: str, problem: str | None) -> None:
    found = prefix_problem(prefix)

    assert found is None if problem is None else problem in (found or "")


def test_a_path_prefix_of_256_characters_is_accepted() -> None:
    assert prefix_problem("/" + "a" * 255) is None


@pytest.mark.parametrize("source", ["*", "_gateway", "orders", "a", "a" * 63])
def test_from_names_a_service_the_gateway_or_any_caller(source: str) -> None:
    assert FROM_RULE.fullmatch(source)


@pytest.mark.parametrize("source", ["", "**", "Orders", "_gateways", "gateway_", "a" * 64, "a_b"])
def test_from_refuses_anything_else(source: str) -> None:
    assert not FROM_RULE.fullmatch(source)


@pytest.mark.parametrize(
    "intentions",
    [
        Intentions(default="maybe"),
        Intentions(rules=(rule("Orders", "allow"),)),
        Intentions(rules=(rule("orders", "permit"),)),
        Intentions(rules=(rule("orders", "allow", ()),)),
        Intentions(rules=(rule("orders", "allow", ("get",)),)),
        Intentions(rules=(rule("orders", "allow", path_prefix="/a/../b"),)),
        Intentions(rules=(IntentionRule(7, "allow"),)),  # type: ignore[arg-type]
    ],
)
def test_intentions_read_from_the_network_are_checked_as_the_registry_checks_them(
    intentions: Intentions,
) -> None:
    assert not well_formed(intentions)
    assert well_formed(ORDERED)
