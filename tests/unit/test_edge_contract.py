"""chalicelib/edge.py against the Chalice it is pinned to, and its pure routing decisions.

Edge leans on two things Chalice does not promise: the private hook
``RestAPIEventHandler._validate_binary_response`` it overrides, and the body of
``Chalice.__call__`` it copies to use its own handler. These tests make a Chalice upgrade
fail here, at the line to re-check, rather than in production.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import io
import logging
import sys
import textwrap

import pytest
from chalice.app import Chalice, RestAPIEventHandler

from chalicelib.edge import Gap, LambdaMeshApp, _RestHandler, route_suffix, unrouted
from lambdamesh_routing.forwarding import METHODS

# sha256 of chalice.app.Chalice.__call__ in Chalice 1.34.0, parsed and unparsed (the same
# text whatever the Python: ast.dump's differs between versions).
PINNED_CHALICE_CALL = "c1b19d59599c4475ac0dabbe4c1768ff092664a2d63ca7ba4c9002a558868f10"
UPGRADE_NOTE = (
    "LambdaMeshApp.__call__ (chalicelib/edge.py) copies Chalice.__call__ to build _RestHandler "
    "instead of RestAPIEventHandler. Compare the new Chalice.__call__ with the copy, port any "
    "change, check that _validate_binary_response is still the hook the REST handler calls, "
    "then update PINNED_CHALICE_CALL."
)
PROXY = "/api/v1/{service}/{version}/{proxy+}"
ORDERS = {"service": "orders", "version": "v1"}


def normalized_source_hash(function: object) -> str:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # type: ignore[arg-type]
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()


def test_chalice_call_is_still_the_one_lambdamesh_app_copies() -> None:
    assert normalized_source_hash(Chalice.__call__) == PINNED_CHALICE_CALL, UPGRADE_NOTE


def test_the_overridden_binary_check_still_exists_and_is_still_called() -> None:
    hook = getattr(RestAPIEventHandler, "_validate_binary_response", None)
    handler_source = inspect.getsource(RestAPIEventHandler)

    assert hook is not None, UPGRADE_NOTE
    assert list(inspect.signature(hook).parameters) == [
        "self",
        "request_headers",
        "response_headers",
    ], UPGRADE_NOTE
    assert "self._validate_binary_response(" in handler_source, UPGRADE_NOTE
    assert _RestHandler._validate_binary_response is not hook


def test_the_chalice_names_the_copy_uses_still_exist() -> None:
    app = LambdaMeshApp("probe")

    assert callable(getattr(app, "_get_middleware_handlers", None)), UPGRADE_NOTE
    assert callable(getattr(RestAPIEventHandler, "create_request_object", None)), UPGRADE_NOTE


def test_the_forwarded_path_is_what_follows_the_route_as_sent() -> None:
    assert route_suffix("/api/v1/orders/v1/dir/a%2Fb/", PROXY, ORDERS) == "/dir/a%2Fb/"
    assert route_suffix("/api/v1/orders/v1", "/api/v1/{service}/{version}", ORDERS) == ""
    assert route_suffix("/api/v1/orders/v1/", "/api/v1/{service}/{version}", ORDERS) == "/"


def test_route_segments_are_found_by_position_whatever_their_escapes() -> None:
    path = "/api/v1/ord%65rs/%761/public/api/v1/orders/v1/admin"

    assert route_suffix(path, PROXY, ORDERS) == "/public/api/v1/orders/v1/admin"


def test_a_base_path_before_the_route_is_skipped() -> None:
    assert route_suffix("/mesh/v2/api/v1/orders/v1/x", PROXY, ORDERS) == "/x"


def test_a_path_that_does_not_carry_the_route_has_no_suffix() -> None:
    assert route_suffix("/api/v1/other/v1/x", PROXY, ORDERS) is None
    assert route_suffix("", PROXY, ORDERS) is None


def test_a_route_parameter_the_event_does_not_carry_matches_no_segment() -> None:
    assert route_suffix("/api/v1/orders/v1/x", PROXY, {"service": "orders"}) is None


def test_a_greedy_route_at_the_root_owns_the_whole_path() -> None:
    assert route_suffix("/a/b%2F/", "/{proxy+}", {}) == "/a/b%2F/"


def test_every_resource_gets_its_missing_methods_and_a_greedy_child() -> None:
    gaps = unrouted({"/health": ["GET"], "/items/{id}": ["GET", "PUT"]})

    others = tuple(m for m in METHODS if m != "GET")
    assert Gap("/health", others, ("GET",)) in gaps
    assert Gap("/health/{proxy+}", METHODS, ()) in gaps
    assert Gap("/", METHODS, ()) in gaps
    assert Gap("/{proxy+}", METHODS, ()) in gaps
    assert Gap("/items", METHODS, ()) in gaps
    assert Gap("/items/{id}/{proxy+}", METHODS, ()) in gaps


def test_a_resource_with_a_parameter_child_gets_no_greedy_sibling() -> None:
    # API Gateway allows one variable child per resource.
    paths = {gap.path for gap in unrouted({"/items/{id}": ["GET"]})}

    assert "/items/{proxy+}" not in paths


def test_a_route_with_every_method_and_a_greedy_route_leave_no_gap() -> None:
    gaps = unrouted({"/": METHODS, "/{proxy+}": METHODS})

    assert gaps == []


def test_the_app_leaves_its_loggers_configuration_to_powertools(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chalice would set the logger of the app's name to ERROR, with a handler of its own,
    whenever the logger's handler writes to another sys.stdout than the current one (as
    under a test runner's capture): every WARNING and INFO line of the app would be lost."""
    logger = logging.getLogger("probe-logs")
    logger.setLevel(logging.WARNING)
    logger.addHandler(logging.StreamHandler(io.StringIO()))
    monkeypatch.setattr(sys, "stdout", io.StringIO())

    LambdaMeshApp("probe-logs")

    assert logger.level == logging.WARNING
    assert len(logger.handlers) == 1
