"""Intentions: which callers may call a service, decided at the callee's inbound port.

A service's policy (``Policy.intentions``) lists rules; the first whose caller, method and path
all match decides, and when none does, the intentions' ``default``, else the stage's. The
caller is what the peer's mesh certificate proves (``lambdamesh_routing.identity``): a
service's name, ``_gateway`` for the gateway, or None for a caller with no identity (plain
text, which only a permissive port lets in). Standard library only: the registry checks rules
with it before it stores them, and the sidecar decides with it.

Paths are compared in one normal form (``normalize_path``), so that a caller cannot slip past
a deny rule, nor into an allow rule, by spelling a path another way.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from lambdamesh_routing import names
from lambdamesh_routing.forwarding import METHODS
from lambdamesh_routing.identity import GATEWAY
from lambdamesh_routing.policy import INTENTION_ACTIONS, IntentionRule, Intentions

# A rule's ``from`` that matches every caller, one without an identity included.
ANY_CALLER = "*"
MAX_RULES = 64
MAX_PATH_PREFIX = 256
# A rule's ``from``: "*", "_gateway" or a service's name.
FROM_PATTERN = rf"^(\*|{GATEWAY}|{names.SERVICE_PATTERN[1:-1]})$"
# A path prefix: "/" then printable ASCII without a space, "?" or "#" (a request path arrives
# percent-encoded, so a raw character beyond these would never match). "$" is written \x24 for
# the JSON Schema compiler, which takes a bare "$" for an end anchor.
PATH_PREFIX_PATTERN = rf"^/[\x21\x22\x24-\x3e\x40-\x7e]{{0,{MAX_PATH_PREFIX - 1}}}$"
FROM_RULE = re.compile(FROM_PATTERN)
PATH_PREFIX_RULE = re.compile(PATH_PREFIX_PATTERN)
# Both rules in words, for the registry's refusals.
FROM_WORDS = (
    f"a service name ({names.rule('service')}), '{GATEWAY}' (the gateway) or '*' (any caller)"
)
PATH_PREFIX_WORDS = (
    f"'/' then at most {MAX_PATH_PREFIX - 1} printable ASCII characters without spaces, '?' or '#'"
)

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# What one app reads as a separator or the end of the path and another as a plain character:
# an encoded "/" or "\", an encoded or raw NUL, a raw backslash, and ";", which Java servlet
# containers take for the start of path parameters they drop (/admin;x is /admin to them).
# Escapes are upper-cased first.
_AMBIGUOUS = ("%2F", "%5C", "%00", "\\", "\x00", ";")
_SLASHES = re.compile(r"/{2,}")
_VERBS = {"allow": "allows", "deny": "denies"}


class Decision(NamedTuple):
    allowed: bool
    # The index of the rule that decided, or None when a default did.
    rule: int | None
    # For the log and the 403: names the rule or the default and the caller, never the path.
    reason: str


def decide(
    intentions: Intentions | None,
    default: str,
    caller: str | None,
    method: str,
    path: str,
) -> Decision:
    """Whether ``caller`` may make this call: the first matching rule decides; when none
    matches, the intentions' default, else ``default`` (the stage's, as the routing view's
    ``mesh.intentions_default`` resolves it). Anything but ``allow`` denies.

    ``method`` is compared in upper case (some frameworks upper-case it themselves, so a deny
    rule for ``DELETE`` must also stop ``delete``); ``path`` is the request target, matched in
    ``normalize_path``'s form.
    """
    rules = () if intentions is None else intentions.rules
    verb = method.upper() if method.isascii() else method
    normal = normalize_path(path) if any(r.path_prefix is not None for r in rules) else None
    for index, rule in enumerate(rules):
        if _matches(rule, caller, verb, normal):
            allowed = rule.action == "allow"
            verdict = "allows" if allowed else "denies"
            return Decision(allowed, index, f"intentions.rules[{index}] {verdict} {_who(caller)}")
    own = None if intentions is None else intentions.default
    chosen, whose = (own, "the service's") if own is not None else (default, "the stage's")
    verdict = _VERBS.get(chosen, "denies")
    return Decision(
        chosen == "allow", None, f"no intention matched {_who(caller)}: {whose} default {verdict}"
    )


def _matches(rule: IntentionRule, caller: str | None, verb: str, normal: str | None) -> bool:
    if rule.source != ANY_CALLER and rule.source != caller:
        return False
    # A HEAD is a GET whose body is not sent: apps serve it with their GET handler.
    as_get = verb == "HEAD" and rule.methods is not None and "GET" in rule.methods
    if rule.methods is not None and verb not in rule.methods and not as_get:
        return False
    if rule.path_prefix is None:
        return True
    if normal is None:
        # Apps read this path in different ways: it may reach what a deny rule protects, and
        # must not be let into what an allow rule opens.
        return rule.action != "allow"
    return under(normal, rule.path_prefix)


def _who(caller: str | None) -> str:
    return "a caller without an identity" if caller is None else caller[:64]


def under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or below it, on a segment boundary: ``/admin`` covers
    ``/admin`` and ``/admin/x`` but not ``/administrator``; ``/admin/`` covers what is below
    ``/admin`` only."""
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + "/")


def normalize_path(target: str) -> str | None:
    """The path of a request target as intentions compare it, or None for a path that apps
    read in different ways.

    The query and fragment are dropped; escapes of unreserved characters (``A-Z a-z 0-9 - .
    _ ~``) are decoded and the other escapes upper-cased (RFC 3986 §6.2.2); dot segments are
    removed (§5.2.4) and repeated ``/`` collapsed. So ``/public/../admin``, ``/%61dmin``,
    ``//admin`` and ``/./admin`` all read ``/admin``. Case is kept: ``/ADMIN`` is another path.

    None when no one form is right. An encoded ``/`` or ``\\``, a backslash or a NUL: some
    apps and frameworks decode ``%2F`` into a separator and others keep it in a segment, some
    take ``\\`` for ``/``, and C strings end at a NUL, so ``/admin%2Fx`` is ``/admin/x`` to one
    app and a single segment to the next. Likewise ``//`` before ``..``: RFC 3986 reads
    ``/a//../b`` as ``/a/b``, while apps that collapse slashes first (nginx, Go's
    ``path.Clean``, Python's ``posixpath.normpath``) read ``/b``. And a target that is not a
    path (``*``, an absolute URI). Such a path satisfies a deny rule's ``path_prefix`` and
    never an allow rule's: it cannot slip past a deny rule on a reading the app does not
    share, nor into an allow rule.
    """
    path = target.partition("?")[0].partition("#")[0]
    if not path.startswith("/"):
        return None
    path = _ESCAPE.sub(_unescape, path)
    if any(mark in path for mark in _AMBIGUOUS):
        return None
    normal = _SLASHES.sub("/", _remove_dots(path))
    if normal != _remove_dots(_SLASHES.sub("/", path)):
        return None
    return normal


def _unescape(escape: re.Match[str]) -> str:
    character = chr(int(escape.group(1), 16))
    return character if character in _UNRESERVED else "%" + escape.group(1).upper()


def _remove_dots(path: str) -> str:
    """RFC 3986 §5.2.4's ``remove_dot_segments`` for a path that starts with ``/``."""
    segments = path.split("/")[1:]
    kept: list[str] = []
    for segment in segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    if segments[-1] in (".", ".."):
        kept.append("")  # "/a/." is "/a/", and "/a/b/.." is "/a/"
    return "/" + "/".join(kept)


def prefix_problem(prefix: object) -> str | None:
    """Why ``prefix`` cannot be a rule's ``path_prefix``, or None when it can: it must be in
    the form request paths are compared in, or it would never match them."""
    if not isinstance(prefix, str) or not PATH_PREFIX_RULE.fullmatch(prefix):
        return f"use {PATH_PREFIX_WORDS}"
    normal = normalize_path(prefix)
    if normal is None:
        return (
            "it holds what apps read in different ways (an encoded '/', '\\' or NUL, a "
            "backslash, ';', or '//' before '..'), which no request path is matched against"
        )
    if normal != prefix:
        return f"write it as {normal!r}, the form request paths are compared in"
    return None


def well_formed(intentions: Intentions) -> bool:
    """Whether intentions read back from the network are ones the registry would store."""
    if intentions.default not in (None, *INTENTION_ACTIONS):
        return False
    return all(_rule_well_formed(rule) for rule in intentions.rules)


def _rule_well_formed(rule: IntentionRule) -> bool:
    methods = rule.methods
    return (
        isinstance(rule.source, str)
        and FROM_RULE.fullmatch(rule.source) is not None
        and rule.action in INTENTION_ACTIONS
        and (methods is None or (len(methods) > 0 and all(m in METHODS for m in methods)))
        and (rule.path_prefix is None or prefix_problem(rule.path_prefix) is None)
    )
