"""API Gateway's resource matching, as plain data: which route template a request path hits.

Shared by the Lambda (function-URL events carry no resource, so the app must find it) and
the local API Gateway (``lambdamesh.events``): one implementation of the precedence both
must agree on. Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple
from urllib.parse import unquote

__all__ = ["RouteMatch", "RoutePattern", "RouteTable"]

# Segment kinds, from most to least specific: at each level API Gateway prefers a literal
# segment over a path parameter, and a path parameter over a greedy one.
_LITERAL, _PARAM, _GREEDY = 0, 1, 2


def _segment_kind(segment: str, is_last: bool) -> int:
    if not (segment.startswith("{") and segment.endswith("}")):
        return _LITERAL
    return _GREEDY if is_last and segment.endswith("+}") else _PARAM


class RoutePattern(NamedTuple):
    """A resource path split once, so matching a request does no parsing."""

    resource: str
    segments: tuple[str, ...]
    kinds: tuple[int, ...]

    @classmethod
    def parse(cls, resource: str) -> RoutePattern:
        segments = tuple(resource.split("/"))
        last = len(segments) - 1
        return cls(
            resource, segments, tuple(_segment_kind(s, i == last) for i, s in enumerate(segments))
        )

    def match(self, parts: Sequence[str]) -> dict[str, str] | None:
        if self.kinds[-1] != _GREEDY:
            return _match_segments(self.segments, parts)
        prefix = self.segments[:-1]
        rest = "/".join(parts[len(prefix) :])
        if not rest:
            return None
        captured = _match_segments(prefix, parts[: len(prefix)])
        if captured is not None:
            captured[self.segments[-1][1:-2]] = unquote(rest)
        return captured


def _match_segments(segments: Sequence[str], parts: Sequence[str]) -> dict[str, str] | None:
    if len(segments) != len(parts):
        return None
    captured: dict[str, str] = {}
    for segment, part in zip(segments, parts, strict=True):
        if segment.startswith("{") and segment.endswith("}"):
            if not part:
                return None
            captured[segment[1:-1]] = unquote(part)
        elif segment != part:
            return None
    return captured


class RouteMatch(NamedTuple):
    resource: str
    path_parameters: dict[str, str]


class RouteTable:
    """API Gateway's resource matching over a set of resource paths (``app.routes``' keys).

    Candidates are tried in order of their segment kinds, literal before parameter before
    greedy at the first level where they differ: the resource tree walk API Gateway does,
    with its backtracking.
    """

    def __init__(self, resources: Iterable[str]) -> None:
        patterns = (RoutePattern.parse(resource) for resource in resources)
        self._patterns = sorted(patterns, key=lambda p: (p.kinds, p.resource))

    def match(self, path: str) -> RouteMatch | None:
        # A trailing slash is ignored everywhere but on the root.
        if path != "/" and path.endswith("/"):
            path = path[:-1]
        parts = path.split("/")
        for pattern in self._patterns:
            captured = pattern.match(parts)
            if captured is not None:
                return RouteMatch(pattern.resource, captured)
        return None
