"""The routing view a sidecar polls: a service's instances and policy, and what its inbound
ports enforce (the policy's mesh settings over the stage's), read through the gateway's
cache, answered 304 when the caller's copy is still right."""

from __future__ import annotations

from typing import Any, NamedTuple

from chalicelib.config import Settings
from chalicelib.discovery import Discovery
from lambdamesh_routing.names import check_name
from lambdamesh_routing.wire import MeshSettings, etag, view_document


class RoutingAnswer(NamedTuple):
    status: int  # 200, or 304 with no document
    document: dict[str, Any] | None
    etag: str


def routing_answer(
    discovery: Discovery,
    service: str,
    if_none_match: str | None,
    now: float,
    settings: Settings,
) -> RoutingAnswer:
    check_name("service", service)
    stage = MeshSettings(settings.mtls_default, settings.intentions_default)
    document = view_document(service, discovery.view(service), now, stage)
    tag = etag(document)
    if if_none_match is not None and _matches(if_none_match, tag):
        return RoutingAnswer(304, None, tag)
    return RoutingAnswer(200, document, tag)


def _matches(header: str, tag: str) -> bool:
    """RFC 9110's weak comparison, which ``If-None-Match`` uses: ``W/`` is ignored."""
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return "*" in candidates or tag in candidates
