"""The package around the code: project file, imports, README. The image: test_image.py."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from sidecar_testkit import ROOT, SIDECAR_DIR, build_sidecar_wheel, install_like_the_image

from lambdamesh_sidecar import __version__
from lambdamesh_sidecar.config import VARIABLES

PACKAGE = SIDECAR_DIR / "lambdamesh_sidecar"


def test_standalone_project_has_no_dependencies_and_the_console_script() -> None:
    project = tomllib.loads((SIDECAR_DIR / "pyproject.toml").read_text())["project"]

    assert project["name"] == "lambdamesh-sidecar"
    assert project["version"] == __version__
    assert project["dependencies"] == []
    assert project["scripts"] == {"lambdamesh-sidecar": "lambdamesh_sidecar.__main__:main"}


def test_standalone_project_ships_the_sidecar_package_only() -> None:
    """lambdamesh_routing has one owner, the repository's root distribution."""
    setuptools = tomllib.loads((SIDECAR_DIR / "pyproject.toml").read_text())["tool"]["setuptools"]

    assert setuptools["packages"] == ["lambdamesh_sidecar"]
    assert "package-dir" not in setuptools


@pytest.mark.parametrize(
    "folder",
    [SIDECAR_DIR / "lambdamesh_sidecar", ROOT / "lambdamesh_routing"],
    ids=["lambdamesh_sidecar", "lambdamesh_routing"],
)
def test_runtime_imports_only_the_standard_library(folder: Path) -> None:
    """The routing decisions included: the gateway shares them, never its I/O."""
    package = folder.name
    imported: set[str] = set()
    for module in folder.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])

    ours = {"lambdamesh_routing", "__future__"} | {package}
    outside = imported - set(sys.stdlib_module_names) - ours
    assert outside == set()


def test_readme_documents_every_variable() -> None:
    readme = (SIDECAR_DIR / "README.md").read_text()

    table = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    assert table == {name for name, _ in VARIABLES}


def test_the_standalone_project_builds_and_installs_beside_the_routing_package(
    tmp_path: Path,
) -> None:
    """The wheel from what the Dockerfile copies, in an interpreter without pip, with the routing
    package the Dockerfile puts beside it (see test_image)."""
    script = install_like_the_image(build_sidecar_wheel(tmp_path), tmp_path / "root")

    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout + result.stderr
