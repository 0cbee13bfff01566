"""The package around the code: the root project that ships it, imports, README. The image:
test_image.py."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from sidecar_testkit import ROOT, SIDECAR_DIR

from lambdamesh_sidecar import __version__
from lambdamesh_sidecar.variables import VARIABLES

PACKAGE = SIDECAR_DIR / "lambdamesh_sidecar"


def root_project() -> dict[str, Any]:
    """The repository's one pyproject.toml: the one distribution that ships the sidecar."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_root_project_defines_the_sidecar_command_at_the_sidecar_version() -> None:
    project = root_project()["project"]

    assert project["version"] == __version__
    assert project["scripts"]["lambdamesh-sidecar"] == "lambdamesh_sidecar.__main__:main"


def test_the_sidecar_command_names_a_function_that_exists() -> None:
    module, function = root_project()["project"]["scripts"]["lambdamesh-sidecar"].split(":")

    assert callable(getattr(importlib.import_module(module), function))


def test_the_root_project_ships_the_sidecar_and_the_routing_package_from_their_folders() -> None:
    setuptools = root_project()["tool"]["setuptools"]
    folders = {"lambdamesh_sidecar": PACKAGE, "lambdamesh_routing": ROOT / "lambdamesh_routing"}

    assert {"lambdamesh_sidecar", "lambdamesh_routing"} <= set(setuptools["packages"])
    # Each from its own folder: the sidecar's under sidecar/, the routing core at the top level.
    assert setuptools["package-dir"]["lambdamesh_sidecar"] == "sidecar/lambdamesh_sidecar"
    assert "lambdamesh_routing" not in setuptools["package-dir"]
    for name, folder in folders.items():
        assert (folder / "__init__.py").is_file(), name
    assert (PACKAGE / "__main__.py").is_file(), "python -m lambdamesh_sidecar, the entrypoint"


def _imports(module: Path) -> set[str]:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    return imported


# The one module outside the standard library the sidecar imports, and where: the outbound
# port's HTTP/1.1 parser, in the module that reads messages with it.
PARSER = {"messages.py": {"httptools"}}


@pytest.mark.parametrize(
    "folder",
    [SIDECAR_DIR / "lambdamesh_sidecar", ROOT / "lambdamesh_routing"],
    ids=["lambdamesh_sidecar", "lambdamesh_routing"],
)
def test_runtime_imports_only_the_standard_library_and_the_outbound_parser(folder: Path) -> None:
    """The routing decisions included: the gateway shares them, never its I/O."""
    package = folder.name
    ours = {"lambdamesh_routing", "__future__"} | {package}
    for module in folder.glob("*.py"):
        allowed = PARSER.get(module.name, set()) if package == "lambdamesh_sidecar" else set()
        outside = _imports(module) - set(sys.stdlib_module_names) - ours
        assert outside == allowed, module.name


def test_a_sidecar_without_the_outbound_port_never_loads_the_parser() -> None:
    """Registration, heartbeats and signals load neither the parser nor the outbound port."""
    heavy = ("httptools", "lambdamesh_sidecar.messages", "lambdamesh_sidecar.outbound")
    probe = (
        "import sys, lambdamesh_sidecar.__main__, lambdamesh_sidecar.runner; "
        f"print(sorted(m for m in sys.modules if m in {heavy!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_readme_documents_every_variable() -> None:
    readme = (SIDECAR_DIR / "README.md").read_text()

    table = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    assert table == {name for name, _ in VARIABLES}
