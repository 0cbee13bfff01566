"""The routing view on the wire: each instance's ``tls``, and ``mesh``, the mode and intentions
default a service's inbound ports enforce, resolved from its policy over the stage's."""

from __future__ import annotations

from typing import Any

import pytest

from lambdamesh_routing.instances import ServiceView
from lambdamesh_routing.policy import IntentionRule, Intentions, Policy
from lambdamesh_routing.wire import (
    MeshSettings,
    etag,
    parse_mesh,
    parse_view,
    resolve_mesh,
    view_document,
)
from tests.routing.conftest import NOW, MakeInstance

STRICT_DENY = MeshSettings("strict", "deny")


def test_each_instance_carries_tls_and_it_reads_back(make_instance: MakeInstance) -> None:
    view = ServiceView((make_instance("i-1", tls=True), make_instance("i-2")))

    document = view_document("orders", view, NOW)

    assert [entry["tls"] for entry in document["instances"]] == [True, False]
    assert [i.tls for i in parse_view("orders", document).instances] == [True, False]


def test_a_view_without_tls_reads_as_plain_text(make_instance: MakeInstance) -> None:
    document = view_document("orders", ServiceView((make_instance("i-1"),)), NOW)
    del document["instances"][0]["tls"]

    assert parse_view("orders", document).instances[0].tls is False


@pytest.mark.parametrize("tls", [1, "true", None])
def test_a_tls_that_is_not_a_boolean_is_a_malformed_view(
    make_instance: MakeInstance, tls: object
) -> None:
    document = view_document("orders", ServiceView((make_instance("i-1"),)), NOW)
    document["instances"][0]["tls"] = tls

    with pytest.raises(ValueError, match="malformed instance"):
        parse_view("orders", document)


@pytest.mark.parametrize(
    ("policy", "stage", "resolved"),
    [
        (None, MeshSettings(), MeshSettings("permissive", "allow")),
        (None, STRICT_DENY, STRICT_DENY),
        (Policy(), STRICT_DENY, STRICT_DENY),
        (Policy(mtls="permissive"), STRICT_DENY, MeshSettings("permissive", "deny")),
        (Policy(intentions=Intentions()), STRICT_DENY, STRICT_DENY),
        (
            Policy(mtls="strict", intentions=Intentions(default="deny")),
            MeshSettings(),
            STRICT_DENY,
        ),
        (Policy(intentions=Intentions(default="allow")), STRICT_DENY, MeshSettings("strict")),
    ],
)
def test_the_policys_values_override_the_stages(
    policy: Policy | None, stage: MeshSettings, resolved: MeshSettings
) -> None:
    document = view_document("orders", ServiceView((), policy), NOW, stage)

    assert resolve_mesh(policy, stage) == resolved
    assert document["mesh"] == {
        "mtls": resolved.mtls,
        "intentions_default": resolved.intentions_default,
    }
    assert parse_mesh(document) == resolved


def test_the_etag_covers_tls_the_mesh_and_the_intentions(make_instance: MakeInstance) -> None:
    plain = ServiceView((make_instance("i-1"),))
    rule = IntentionRule("orders", "allow", ("GET",), "/items")
    documents = [
        view_document("orders", plain, NOW),
        view_document("orders", ServiceView((make_instance("i-1", tls=True),)), NOW),
        view_document("orders", plain, NOW, MeshSettings("strict")),
        view_document("orders", plain, NOW, MeshSettings(intentions_default="deny")),
        view_document("orders", ServiceView(plain.instances, Policy(mtls="strict")), NOW),
        view_document(
            "orders",
            ServiceView(plain.instances, Policy(intentions=Intentions(rules=(rule,)))),
            NOW,
        ),
    ]

    assert len({etag(document) for document in documents}) == len(documents)


def test_a_policys_intentions_cross_the_wire_unchanged(make_instance: MakeInstance) -> None:
    intentions = Intentions(
        default="deny",
        rules=(
            IntentionRule("_gateway", "allow", ("GET", "HEAD"), "/public"),
            IntentionRule("*", "deny", path_prefix="/admin/"),
            IntentionRule("billing", "allow"),
        ),
    )
    policy = Policy(mtls="strict", intentions=intentions)

    document = view_document("orders", ServiceView((), policy), NOW)

    assert parse_view("orders", document).policy == policy


@pytest.mark.parametrize(
    "change",
    [
        {"mtls": "on"},
        {"intentions": {"default": "maybe", "rules": []}},
        {"intentions": {"default": None, "rules": [{"from": "Bad!", "action": "allow"}]}},
        {"intentions": {"default": None, "rules": [{"from": "a", "action": "permit"}]}},
        {"intentions": {"default": None, "rules": [{"from": "a", "action": "allow"}, "x"]}},
        {"intentions": {"rules": [{"from": "a", "action": "allow", "methods": "GET"}]}},
        {"intentions": {"rules": [{"from": "a", "action": "allow", "path_prefix": "/a/../b"}]}},
        {"intentions": {"rules": [{"from": "a", "action": "allow", "path_prefix": 7}]}},
        {"intentions": {"rules": [{"action": "allow"}]}},
        {"intentions": ["allow"]},
    ],
)
def test_malformed_intentions_or_mode_are_a_malformed_view(change: dict[str, Any]) -> None:
    document = view_document("orders", ServiceView((), Policy()), NOW)
    document["policy"].update(change)

    with pytest.raises(ValueError, match="routing view"):
        parse_view("orders", document)


def test_a_view_without_mesh_reads_as_the_defaults() -> None:
    assert parse_mesh({"service": "orders", "instances": [], "policy": None}) == MeshSettings(
        "permissive", "allow"
    )
    assert parse_mesh({"mesh": {"mtls": "strict"}}) == MeshSettings("strict", "allow")


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        {"mesh": "strict"},
        {"mesh": []},
        {"mesh": {"mtls": "STRICT", "intentions_default": "allow"}},
        {"mesh": {"mtls": "strict", "intentions_default": True}},
        {"mesh": {"mtls": None, "intentions_default": "deny"}},
        {"mesh": {"mtls": ["strict"], "intentions_default": "deny"}},
    ],
)
def test_a_mesh_that_is_not_one_is_refused(document: Any) -> None:
    with pytest.raises(ValueError):
        parse_mesh(document)
