"""The function's cold start: one-time work at initialisation, and SnapStart's hooks.

``app.py`` calls ``initialise`` once, at import. On Lambda (``AWS_LAMBDA_FUNCTION_NAME`` is
set) it builds the DynamoDB client and the gateway and reads the signing key while the
function initialises, so the first request does not wait for them. Elsewhere (tests,
``lambdamesh dev``) it does nothing: the collaborators are built on first use.

With SnapStart (Python 3.12 and later), initialisation runs once when a version is
published and its memory is snapshotted; each cold start restores the snapshot instead. The
runtime's ``snapshot_restore_py`` module then exists, and ``wiring.after_restore`` is
registered to run after each restore: it drops the snapshot's dead connections, reads the
key again and reseeds the random generators.

Initialisation never fails for want of DynamoDB or the key store: what cannot be done now is
logged and done by the first request that needs it, which answers with the usual error.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib import wiring
from chalicelib.observability import logger

SNAPSTART_HOOKS_MODULE = "snapshot_restore_py"


def initialise(environ: Mapping[str, str] = os.environ) -> bool:
    """Prime on Lambda and register SnapStart's after-restore hook; True if primed."""
    if not environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return False
    guarded(wiring.prime, "initialisation")()
    hooks = snapstart_hooks()
    if hooks is not None:
        hooks.register_after_restore(guarded(wiring.after_restore, "restore"))
    return True


def snapstart_hooks() -> Any:
    """The runtime's hook registry on a SnapStart-capable runtime, else None."""
    try:
        return importlib.import_module(SNAPSTART_HOOKS_MODULE)
    except ImportError:
        return None


def guarded(work: Callable[[], None], phase: str) -> Callable[[], None]:
    """``work``, with any failure logged instead of failing the phase."""

    def run() -> None:
        try:
            work()
        except Exception as exc:
            logger.warning(
                "cold start work was not done; the first request will do it",
                extra={"phase": phase, "reason": f"{type(exc).__name__}: {exc}"},
            )

    return run
