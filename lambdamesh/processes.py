"""Child processes that `lambdamesh dev --demo` starts, and stops in reverse order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lambdamesh.childguard import PARENT_PID_VARIABLE


@dataclass
class Supervisor:
    stop_timeout: float = 10.0
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(
        self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        merged = {**os.environ, **(env or {}), PARENT_PID_VARIABLE: str(os.getpid())}
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            [sys.executable, "-m", "lambdamesh.childguard", *args],
            env=merged,
            stdin=subprocess.DEVNULL,
            # Own session: a Ctrl-C reaches only `lambdamesh dev`, which stops the children
            # in order, rather than every process at once.
            start_new_session=True,
        )
        self.children.append((name, child))
        return child

    def stop_all(self) -> None:
        """SIGTERM everything (sidecars deregister on it), then wait; SIGKILL stragglers."""
        for _, child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for _, child in reversed(self.children):
            try:
                child.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()
