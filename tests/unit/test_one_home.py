"""Each rule both sides apply is written once, in ``lambdamesh_routing``.

A rule written twice drifts: one copy gets fixed and the other does not, and reading one
copy does not find the behaviour. These tests read the source of the Lambda
(``app.py``, ``chalicelib/``), the command line (``lambdamesh/``) and the sidecar
(``lambdamesh_sidecar``) and fail where any of them spells again a name pattern or limit, the
list of HTTP methods, the on/off words, the repeated-header separators or a try's error texts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdamesh_routing import flags, forwarding, names

ROOT = Path(__file__).resolve().parents[2]
# Where the rules' users live; ``lambdamesh_routing`` itself is the one home.
SOURCES = ("app.py", "chalicelib", "lambdamesh", "sidecar/lambdamesh_sidecar")

NAME_PATTERNS = {
    value: name
    for name, value in vars(names).items()
    if name.endswith("_PATTERN") and isinstance(value, str)
}
NAME_CONSTANTS = {name for name in vars(names) if name.isupper() and not name.startswith("_")}
FLAG_WORDS = frozenset(flags.TRUE_WORDS + flags.FALSE_WORDS)
# The texts a failed try is answered with (lambdamesh_routing.attempts), "{}" for each value.
TRY_TEXTS = ("no instance of {} {} could be reached", "{} {} did not answer in time")


def modules(root: Path = ROOT) -> Iterator[tuple[str, ast.Module]]:
    for source in SOURCES:
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


def second_name_rules(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and _anchored(str(node.value)) in NAME_PATTERNS:
            found.append(f"line {node.lineno}: {NAME_PATTERNS[_anchored(node.value)]}")
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in NAME_CONSTANTS:
                    found.append(f"line {node.lineno}: {target.id} defined again")
    return found


def second_method_lists(tree: ast.Module) -> list[str]:
    return [
        f"line {node.lineno}"
        for node in ast.walk(tree)
        if set(strings(node)) == set(forwarding.METHODS)
    ]


def second_flag_words(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
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


CHECKS = {
    "a name pattern or limit (lambdamesh_routing.names)": second_name_rules,
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
