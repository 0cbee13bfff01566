"""The storage module stands on PynamoDB's public API only: a private name (``_get_connection``,
``_get_save_args``, a ``pynamodb._util``) may change in any release without notice."""

from __future__ import annotations

import ast
from pathlib import Path

import chalicelib.storage

SOURCE = Path(chalicelib.storage.__file__)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_names_used(source: str) -> list[str]:
    """Private names imported from pynamodb, or reached as an attribute of anything but the
    module's own objects (``self._table`` is this module's own state)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pynamodb"):
            module = str(node.module)
            parts = [*module.split("."), *(alias.name for alias in node.names)]
            found += [f"{module}: {part}" for part in parts if is_private(part)]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if any(map(is_private, a.name.split(".")))]
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id == "self"):
                found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Dict):
            found += [
                f"line {key.lineno}: {key.value!r}"
                for key in node.keys
                if isinstance(key, ast.Constant) and _private_identifier(key.value)
            ]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ACCESSORS:
            found += [
                f"line {arg.lineno}: {arg.value!r}"
                for arg in node.args[1:2]
                if isinstance(arg, ast.Constant) and _private_identifier(arg.value)
            ]
    return found


# Ways to reach an attribute by its name as a string.
ACCESSORS = frozenset({"getattr", "setattr", "hasattr", "delattr"})


def _private_identifier(value: object) -> bool:
    """A string that names a private attribute: a class body given as a dict, or a setattr."""
    return isinstance(value, str) and value.isidentifier() and is_private(value)


def test_storage_uses_no_private_name_of_pynamodb() -> None:
    assert private_names_used(SOURCE.read_text()) == []


def test_the_check_sees_the_private_calls_it_guards_against() -> None:
    source = (
        "from pynamodb.connection._botocore_private import BotocoreBaseClientPrivate\n"
        "args, kwargs = item._get_save_args()\n"
        "self._instances._get_connection().put_item(*args, **kwargs)\n"
        "self._table.put_item(item.serialize())\n"
        "bound = type('Bound', (Model,), {'Meta': meta, '_connection': connection})\n"
        "setattr(model, '_connection', connection)\n"
        "headers = {'Content-Type': 'x'}\n"
    )

    assert sorted(private_names_used(source)) == [
        "line 2: ._get_save_args",
        "line 3: ._get_connection",
        "line 5: '_connection'",
        "line 6: '_connection'",
        "pynamodb.connection._botocore_private: _botocore_private",
    ]
