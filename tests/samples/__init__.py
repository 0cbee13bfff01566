"""Events as AWS documents them (README.md beside this file says where each comes from)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).parent
RUNNING = "ecs-task-running.json"
STOPPED = "ecs-task-stopped.json"
SPOT_NOTICE = "ecs-task-spot-termination-notice.json"


def load(name: str) -> dict[str, Any]:
    """A fresh copy of the sample, which a test may change freely."""
    event: dict[str, Any] = json.loads((FOLDER / name).read_text(encoding="utf-8"))
    return event
