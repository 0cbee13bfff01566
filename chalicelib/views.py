"""The routing view a sidecar polls: a service's instances and policy, read through the
gateway's cache, answered 304 when the caller's copy is still right."""

from __future__ import annotations

from typing import Any, NamedTuple

from chalicelib.discovery import Discovery
from lambdamesh_routing.names import check_name
from lambdamesh_routing.wire import etag, view_document


class RoutingAnswer(NamedTuple):
    status: int  # 200, or 304 with no document
    document: dict[str, Any] | None
    etag: str


def routing_answer(
    discovery: Discovery, service: str, if_none_match: str | None, now: float
) -> RoutingAnswer:
    check_name("service", service)
    document = view_document(service, discovery.view(service), now)
    tag = etag(document)
    if if_none_match is not None and _matches(if_none_match, tag):
        return RoutingAnswer(304, None, tag)
    return RoutingAnswer(200, document, tag)


def _matches(header: str, tag: str) -> bool:
    """RFC 9110's weak comparison, which ``If-None-Match`` uses: ``W/`` is ignored."""
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return "*" in candidates or tag in candidates
