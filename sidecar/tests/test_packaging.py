"""The image and the package around the code: checked by reading them (no Docker here)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from sidecar_testkit import SIDECAR_DIR

from lambdamesh_sidecar import __version__
from lambdamesh_sidecar.config import VARIABLES

PACKAGE = SIDECAR_DIR / "lambdamesh_sidecar"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (SIDECAR_DIR / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_image_runs_the_console_script_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]

    assert final[0][1].startswith("python:3.11-slim")
    user = [arg for op, arg in final if op == "USER"]
    assert user, "the final stage must drop root"
    assert user[-1].split(":")[0] not in ("0", "root")
    assert ("ENTRYPOINT", '["lambdamesh-sidecar"]') in final
    assert ("STOPSIGNAL", "SIGTERM") in final
    assert any(op == "RUN" and "pip install --no-cache-dir ." in arg for op, arg in final)


def test_image_copies_what_the_standalone_build_needs() -> None:
    copied = " ".join(arg for op, arg in dockerfile_instructions() if op == "COPY")

    assert "pyproject.toml" in copied
    assert "README.md" in copied
    assert "lambdamesh_sidecar" in copied


def test_standalone_project_has_no_dependencies_and_the_console_script() -> None:
    project = tomllib.loads((SIDECAR_DIR / "pyproject.toml").read_text())["project"]

    assert project["name"] == "lambdamesh-sidecar"
    assert project["version"] == __version__
    assert project["dependencies"] == []
    assert project["scripts"] == {"lambdamesh-sidecar": "lambdamesh_sidecar.__main__:main"}


def test_runtime_imports_only_the_standard_library() -> None:
    imported: set[str] = set()
    for module in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])

    outside = imported - set(sys.stdlib_module_names) - {"lambdamesh_sidecar", "__future__"}
    assert outside == set()


def test_readme_documents_every_variable() -> None:
    readme = (SIDECAR_DIR / "README.md").read_text()

    table = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    assert table == {name for name, _ in VARIABLES}


def test_the_standalone_project_builds_and_installs_from_sidecar_alone(tmp_path: Path) -> None:
    """What the Dockerfile's `pip install .` does, from a copy of sidecar/ alone."""
    source = tmp_path / "context"
    ignored = shutil.ignore_patterns("tests", "__pycache__", "build", "*.egg-info")
    shutil.copytree(SIDECAR_DIR, source, ignore=ignored)
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    pip = [sys.executable, "-m", "pip"]
    build = [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels)]
    subprocess.run([*build, str(source)], check=True, capture_output=True, timeout=180)
    [wheel] = wheels.glob("*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    install = [*pip, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps"]
    subprocess.run([*install, str(wheel)], check=True, capture_output=True, timeout=180)

    result = subprocess.run(
        [str(venv / "bin" / "lambdamesh-sidecar"), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout + result.stderr
