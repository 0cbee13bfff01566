"""Each rule both sides apply is written once, in ``lambdamesh_routing``.

A rule written twice drifts: one copy gets fixed and the other does not, and reading one
copy does not find the behaviour. These tests read the source of the Lambda
(``app.py``, ``chalicelib/``), the command line (``lambdamesh/``) and the sidecar
(``lambdamesh_sidecar``) and fail where any of them spells again a name pattern or limit, the
weight and lease ranges, the list of HTTP methods, the on/off words, the repeated-header
separators or a try's error texts. The DNS label rule is looked for in ``lambdamesh_routing``
too: it is written once even there.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from lambdamesh_routing import flags, forwarding, limits, names

ROOT = Path(__file__).resolve().parents[2]
# Where the rules' users live; ``lambdamesh_routing`` itself is the one home.
SOURCES = ("app.py", "chalicelib", "lambdamesh", "sidecar/lambdamesh_sidecar")

NAME_PATTERNS = {
    value: name
    for name, value in vars(names).items()
    if name.endswith("_PATTERN") and isinstance(value, str)
}
NAME_CONSTANTS = {name for name in vars(names) if name.isupper() and not name.startswith("_")}
LIMIT_CONSTANTS = {name for name in vars(limits) if name.isupper() and not name.startswith("_")}
# Each range's bounds (MIN_X, MAX_X), and what it bounds.
RANGES = {
    (value, vars(limits)[f"MAX_{name[4:]}"]): name[4:].lower()
    for name, value in vars(limits).items()
    if name.startswith("MIN_")
}
# A range in words, "5..300"; a bound with a fraction ("0.2..300") is another range.
RANGE_TEXT = re.compile(r"(?<![0-9.])([0-9]+)\.\.([0-9]+)(?![0-9.])")
FLAG_WORDS = frozenset(flags.TRUE_WORDS + flags.FALSE_WORDS)
# The texts a failed try is answered with (lambdamesh_routing.attempts), "{}" for each value.
TRY_TEXTS = ("no instance of {} {} could be reached", "{} {} did not answer in time")
# What any DNS label rule accepts and refuses, however it is spelt (a label or a whole name,
# one case or both, lookarounds or not).
LABELS = ("a", "0", "a-b", "xn--bcher-kva", "a" * 63)
NOT_LABELS = ("", "-a", "a-", "a" * 64, "a_b")
LABEL_HOME = "lambdamesh_routing/hosts.py"


def modules(
    root: Path = ROOT, sources: tuple[str, ...] = SOURCES
) -> Iterator[tuple[str, ast.Module]]:
    for source in sources:
        top = root / source
        for path in sorted([top] if top.is_file() else top.rglob("*.py")):
            yield str(path.relative_to(root)), ast.parse(path.read_text(encoding="utf-8"))


def strings(node: ast.AST) -> list[str]:
    """The string constants a collection literal holds, or [] for anything else."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1:
        node = node.args[0]  # frozenset({...}), tuple([...])
    if not isinstance(node, ast.Tuple | ast.List | ast.Set):
        return []
    found = [e.value for e in node.elts if isinstance(e, ast.Constant)]
    return [s for s in found if isinstance(s, str)] if len(found) == len(node.elts) else []


def _anchored(text: str) -> str:
    return text if text.startswith("^") else f"^{text}$"


def defined_again(node: ast.AST, constants: set[str]) -> list[str]:
    """The constants of ``constants`` that ``node`` assigns, if it is an assignment."""
    if not isinstance(node, ast.Assign | ast.AnnAssign):
        return []
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [
        f"line {node.lineno}: {target.id} defined again"
        for target in targets
        if isinstance(target, ast.Name) and target.id in constants
    ]


def second_name_rules(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and _anchored(str(node.value)) in NAME_PATTERNS:
            found.append(f"line {node.lineno}: {NAME_PATTERNS[_anchored(str(node.value))]}")
        found.extend(defined_again(node, NAME_CONSTANTS))
    return found


def _number(node: ast.expr) -> object:
    if isinstance(node, ast.Constant) and not isinstance(node.value, bool):
        return node.value
    return None


def bound_pairs(node: ast.AST) -> list[tuple[object, object]]:
    """Numbers written side by side as a range's bounds can be: a call's arguments
    (``f(name, 5, 300)``), a collection's items, the ends of ``low <= x <= high``."""
    if isinstance(node, ast.Compare) and len(node.comparators) == 2:
        return [(_number(node.left), _number(node.comparators[1]))]
    items = node.args if isinstance(node, ast.Call) else getattr(node, "elts", [])
    numbers = [_number(item) for item in items]
    return list(pairwise(numbers))


def range_texts(node: ast.AST) -> list[tuple[object, object]]:
    if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
        return []
    return [(int(low), int(high)) for low, high in RANGE_TEXT.findall(node.value)]


def second_ranges(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        found.extend(defined_again(node, LIMIT_CONSTANTS))
        for bounds in bound_pairs(node) + range_texts(node):
            if bounds in RANGES:
                found.append(f"line {getattr(node, 'lineno', '?')}: the {RANGES[bounds]} range")
    return found


def second_method_lists(tree: ast.Module) -> list[str]:
    return [
        f"line {node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.expr) and set(strings(node)) == set(forwarding.METHODS)
    ]


def second_flag_words(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.expr):  # only expressions hold strings (and a line)
            continue
        words = {s.lower() for s in strings(node)}
        if len(words) > 1 and words <= FLAG_WORDS and not words <= {"0", "1"}:
            found.append(f"line {node.lineno}: {sorted(words)}")
        if isinstance(node, ast.Compare):
            compared = [node.left, *node.comparators]
            if any(isinstance(c, ast.Constant) and c.value in ("true", "false") for c in compared):
                found.append(f"line {node.lineno}: compared with a flag word")
    return found


def second_field_joins(tree: ast.Module) -> list[str]:
    """A function that tells ``Cookie`` apart and joins with "; " joins fields itself."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.Lambda):
            continue
        constants = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant)}
        if "; " in constants and "cookie" in constants:
            found.append(f"line {node.lineno}: {getattr(node, 'name', 'lambda')}")
    return found


def template(node: ast.JoinedStr) -> str:
    """An f-string with "{}" for each value it formats."""
    return "".join(
        str(part.value) if isinstance(part, ast.Constant) else "{}" for part in node.values
    )


def second_try_texts(tree: ast.Module) -> list[str]:
    return [
        f"line {node.lineno}: {template(node)!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr) and template(node) in TRY_TEXTS
    ]


def is_label_rule(text: str) -> bool:
    """Whether ``text``, read as a regular expression, matches as a DNS label rule does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # prose with a backslash or "[[" compiles with a warning
        try:
            rule = re.compile(text)
        except (re.error, OverflowError, RecursionError):
            return False
    return all(rule.fullmatch(s) for s in LABELS) and not any(rule.fullmatch(s) for s in NOT_LABELS)


def label_rules(tree: ast.Module) -> list[str]:
    return [
        f"line {node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_label_rule(node.value)
    ]


CHECKS = {
    "a name pattern or limit (lambdamesh_routing.names)": second_name_rules,
    "the weight and lease ranges (lambdamesh_routing.limits)": second_ranges,
    "the HTTP methods (lambdamesh_routing.forwarding.METHODS)": second_method_lists,
    "the on/off words (lambdamesh_routing.flags)": second_flag_words,
    "repeated-field joining (lambdamesh_routing.forwarding.joined_field)": second_field_joins,
    "a failed try's answer (lambdamesh_routing.attempts)": second_try_texts,
}


def copies(check: str, root: Path = ROOT) -> list[str]:
    return [f"{path} {where}" for path, tree in modules(root) for where in CHECKS[check](tree)]


def test_the_sources_are_found() -> None:
    found = [path for path, _ in modules()]

    assert "chalicelib/validation.py" in found
    assert "sidecar/lambdamesh_sidecar/config.py" in found
    assert "sidecar/lambdamesh_sidecar/outbound.py" in found


@pytest.mark.parametrize("check", CHECKS)
def test_no_rule_has_a_second_definition(check: str) -> None:
    assert copies(check) == [], f"{check} is written again outside lambdamesh_routing"


@pytest.mark.parametrize(
    ("check", "source"),
    [
        (
            "a name pattern or limit (lambdamesh_routing.names)",
            'ZONE = re.compile(r"[a-z0-9-]{1,64}")',
        ),
        ("a name pattern or limit (lambdamesh_routing.names)", "MAX_METADATA_VALUE = 512"),
        ("the weight and lease ranges (lambdamesh_routing.limits)", "MAX_WEIGHT: int = 1000"),
        (
            "the weight and lease ranges (lambdamesh_routing.limits)",
            'weight = _optional_integer(environ, "LAMBDAMESH_WEIGHT", 1, 1000)',
        ),
        (
            "the weight and lease ranges (lambdamesh_routing.limits)",
            'lease = _integer("LAMBDAMESH_LEASE_SECONDS", raw, 5, 300)',
        ),
        ("the weight and lease ranges (lambdamesh_routing.limits)", "ok = 5 <= lease <= 300"),
        ("the weight and lease ranges (lambdamesh_routing.limits)", "LEASE = (5, 300)"),
        (
            "the weight and lease ranges (lambdamesh_routing.limits)",
            'HELP = "load-balancing weight, integer 1..1000"',
        ),
        (
            "the HTTP methods (lambdamesh_routing.forwarding.METHODS)",
            'ANY = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")',
        ),
        ("the on/off words (lambdamesh_routing.flags)", 'on = raw in ("1", "yes")'),
        ("the on/off words (lambdamesh_routing.flags)", 'on = raw.lower() == "true"'),
        (
            "repeated-field joining (lambdamesh_routing.forwarding.joined_field)",
            'def j(n, v):\n    return ("; " if n == "cookie" else ", ").join(v)',
        ),
        (
            "a failed try's answer (lambdamesh_routing.attempts)",
            'e = f"{s} {v} did not answer in time"',
        ),
    ],
)
def test_each_check_finds_a_copy(check: str, source: str) -> None:
    assert CHECKS[check](ast.parse(source))


@pytest.mark.parametrize(
    "source",
    [
        '_number(environ, "LAMBDAMESH_HEARTBEAT_SECONDS", 0.2, 300, 60.0)',
        'HELP = "heartbeat interval, 0.2..300; refresh, 1..300; lease, 15..300"',
        '_optional_integer(environ, "LAMBDAMESH_OUTBOUND_PORT", 1, 65535)',
        "ok = 1 <= failures <= 10000",
    ],
)
def test_the_range_check_lets_other_ranges_be(source: str) -> None:
    assert second_ranges(ast.parse(source)) == []


def test_the_dns_label_rule_is_written_once_in_lambdamesh_routing_hosts() -> None:
    found = [
        (path, where)
        for path, tree in modules(sources=(*SOURCES, "lambdamesh_routing"))
        for where in label_rules(tree)
    ]

    assert [path for path, _ in found] == [LABEL_HOME], (
        f"a DNS label rule is written outside {LABEL_HOME} (use hosts.is_dns_label): {found}"
    )


@pytest.mark.parametrize(
    "source",
    [
        '_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")',
        '_HOST_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"',
        'HOST = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")',
        'SERVICE_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"',
        'LABEL = re.compile(r"(?i)^[a-z\\d]([a-z\\d-]{0,61}[a-z\\d])?$")',
    ],
)
def test_the_label_check_finds_each_spelling(source: str) -> None:
    assert label_rules(ast.parse(source))


@pytest.mark.parametrize(
    "source",
    [
        'ZONE = r"^[a-z0-9-]{1,64}$"',
        'ANY = r"^[a-z0-9-]{1,63}$"',
        'VERSION = r"^[a-z0-9]([a-z0-9._-]{0,30}[a-z0-9])?$"',
        'NUMERIC = r"^(0x[0-9a-f]*|[0-9]+)$"',
        'SCHEME = r"[a-z][a-z0-9+.-]*"',
        'DOC = """Labels of a-z, 0-9 and hyphens, 1-63 characters."""',
    ],
)
def test_the_label_check_lets_other_rules_be(source: str) -> None:
    assert label_rules(ast.parse(source)) == []
