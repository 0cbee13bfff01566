"""What a project's ``.chalice/config.json`` gives the Lambda of one stage, read as Chalice
reads it, and ``patched_environ``, which puts an environment in place for a block: the dev
server and the test client run the app in the environment it would have on Lambda.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_LAMBDA_TIMEOUT",
    "ProjectConfig",
    "patched_environ",
]

# Chalice's default when .chalice/config.json names no ``lambda_timeout``.
DEFAULT_LAMBDA_TIMEOUT = 60


@dataclass(frozen=True)
class ProjectConfig:
    """What ``.chalice/config.json`` gives the Lambda of one stage: its environment (global,
    then stage, then the ``api_handler`` function's, later ones winning) and its timeout."""

    environment_variables: dict[str, str] = field(default_factory=dict)
    lambda_timeout: float = DEFAULT_LAMBDA_TIMEOUT

    @classmethod
    def load(cls, project_dir: Path, stage: str) -> ProjectConfig:
        path = project_dir / ".chalice" / "config.json"
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        staged = data.get("stages", {}).get(stage, {})
        function = staged.get("lambda_functions", {}).get("api_handler", {})
        environment: dict[str, str] = {}
        timeout = DEFAULT_LAMBDA_TIMEOUT
        for level in (data, staged, function):
            environment.update(level.get("environment_variables", {}))
            timeout = level.get("lambda_timeout", timeout)
        return cls(environment, float(timeout))


@contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block, and what was there before afterwards."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
