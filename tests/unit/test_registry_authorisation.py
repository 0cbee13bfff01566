"""Who may write is decided before the body is read: a caller that may not write a service
learns nothing from the answer about its body, not even how large one may be. The names in
the path (the address) come first; they are public rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.auth import ADMIN_SCOPE, Principal
from chalicelib.errors import Forbidden, InvalidName, InvalidRequest
from chalicelib.registry import Registry
from chalicelib.validation import MAX_REGISTRY_BODY
from lambdamesh_routing.hosts import AddressPolicy

ORDERS = Principal("service:orders")
PAYMENTS = Principal("service:payments")
ADMIN = Principal(ADMIN_SCOPE)

# Bodies that would each be refused on their own: not JSON, too large, too deep, of the wrong
# shape, or absent where one is needed.
BAD_BODIES = [
    b"{not json",
    b"x" * (MAX_REGISTRY_BODY + 1),
    b"[" * 100,
    json.dumps({"colour": "red", "port": 70000, "strategy": "fastest"}).encode(),
    b"",
    b" \n",
]


class UntouchedStore:
    """A store that fails the test if the registry reaches it at all."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was asked to {name} for a refused write")


@pytest.fixture
def registry() -> Registry:
    return Registry(UntouchedStore(), AddressPolicy())


Write = Callable[[Registry, Principal, bytes], object]

WRITES: dict[str, tuple[Write, Principal]] = {
    "register": (lambda r, p, body: r.register(p, "orders", "task-1", body), PAYMENTS),
    "heartbeat": (lambda r, p, body: r.heartbeat(p, "orders", "task-1", body), PAYMENTS),
    "put_policy": (lambda r, p, body: r.put_policy(p, "orders", body), ORDERS),
}


@pytest.mark.parametrize("body", BAD_BODIES, ids=lambda b: repr(b[:12]))
@pytest.mark.parametrize("write", WRITES)
def test_a_writer_that_may_not_write_is_refused_before_its_body_is_read(
    registry: Registry, write: str, body: bytes
) -> None:
    call, not_allowed = WRITES[write]

    with pytest.raises(Forbidden):
        call(registry, not_allowed, body)


def test_a_bad_name_is_refused_before_the_token_is_weighed(registry: Registry) -> None:
    with pytest.raises(InvalidName):
        registry.register(PAYMENTS, "Orders!", "task-1", b"{not json")
    with pytest.raises(InvalidName):
        registry.put_policy(ORDERS, "Orders!", b"")


def test_an_admin_sending_no_policy_is_told_to_send_one(registry: Registry) -> None:
    for body in (b"", b" \r\n"):
        with pytest.raises(InvalidRequest) as caught:
            registry.put_policy(ADMIN, "orders", body)

        assert "request body is empty" in caught.value.message
        assert "{} for every default" in caught.value.message
