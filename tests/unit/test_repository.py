"""What newcomers read first stays true: ARCHITECTURE.md names only paths that exist, and the
pre-commit hooks run exactly the lint and type checks `make test` runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# Where a bare module name in ARCHITECTURE.md may live.
PACKAGES = (
    "",
    "chalicelib",
    "chalicelib/eureka",
    "chalicelib/exposure",
    "lambdamesh",
    "sidecar",
    "lambdamesh_routing",
    "sidecar/lambdamesh_sidecar",
    "infra",
)


def _named_paths(text: str) -> set[str]:
    """Every code span that looks like a file or folder of the repository."""
    spans = re.findall(r"`([^`\s]+)`", text)
    return {s for s in spans if re.fullmatch(r"[\w./-]+\.(py|yaml|md)|[\w.-]+(/[\w.-]+)*/", s)}


def _exists(name: str) -> bool:
    """A path from the root, or a module of one of the packages, or a path inside the
    routing core or the sidecar named by its import name."""
    candidates = [name, *(f"{package}/{name}" for package in PACKAGES if package)]
    candidates += [f"sidecar/{name}"]
    return any((ROOT / candidate).exists() for candidate in candidates)


def test_architecture_names_only_paths_that_exist() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")

    named = _named_paths(text)

    assert len(named) > 40
    missing = sorted(name for name in named if not _exists(name))
    assert missing == []


def test_architecture_names_every_module_of_the_lambda_and_the_sidecar() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    folders = [
        "chalicelib",
        "chalicelib/eureka",
        "lambdamesh_routing",
        "sidecar/lambdamesh_sidecar",
    ]

    modules = {
        path.name
        for folder in folders
        for path in (ROOT / folder).glob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    }

    assert sorted(m for m in modules if m not in text) == []


def test_the_routing_core_lives_at_the_path_of_its_name_and_the_lambda_links_to_it() -> None:
    linked = ROOT / "vendor" / "lambdamesh_routing"

    assert (ROOT / "lambdamesh_routing" / "__init__.py").is_file()
    assert not (ROOT / "sidecar" / "lambdamesh_routing").exists()
    assert not (ROOT / "chalicelib" / "lambdamesh_routing").exists()
    assert linked.is_symlink()
    assert linked.resolve() == (ROOT / "lambdamesh_routing").resolve()


def _imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_the_routing_tests_import_nothing_from_the_gateway_the_sidecar_or_another_tier() -> None:
    ours = ("lambdamesh_routing", "tests.routing")
    project = ("app", "chalicelib", "lambdamesh", "lambdamesh_sidecar", "tests")
    tests = sorted((ROOT / "tests" / "routing").glob("*.py"))

    imported = {(p.name, m) for p in tests for m in _imported(p)}

    assert len(tests) > 5
    outside = {
        (name, module)
        for name, module in imported
        if module.split(".")[0] in project and not module.startswith(ours)
    }
    assert outside == set()


def _make_recipe(target: str) -> list[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    body = re.search(rf"^{target}:[^\n]*\n((?:\t[^\n]*\n)+)", makefile, re.MULTILINE)
    assert body, target
    return [line.strip().replace("$(BIN)", ".venv/bin") for line in body.group(1).splitlines()]


def test_the_pre_commit_hooks_run_what_make_lint_and_typecheck_run() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]

    entries = [hook["entry"] for hook in hooks]

    assert entries == _make_recipe("lint") + _make_recipe("typecheck")
    assert all(hook["language"] == "system" and not hook["pass_filenames"] for hook in hooks)
