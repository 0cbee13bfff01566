"""Start a program that dies with the process that started it.

`lambdamesh dev --demo` runs apps and sidecars as children. If the dev process is killed
outright (SIGKILL, a crash), nothing would stop them and they would hold their ports and retry
forever. On Linux the kernel can send a signal to a process when its parent dies
(``PR_SET_PDEATHSIG``, kept across ``exec``); this tiny launcher sets it, checks the parent has
not already gone, and replaces itself with the real program. Elsewhere it only execs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PARENT_PID_VARIABLE = "LAMBDAMESH_PARENT_PID"


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m lambdamesh.childguard ARGS...", file=sys.stderr)
        return 2
    die_with_parent()
    expected = os.environ.pop(PARENT_PID_VARIABLE, None)
    if expected is not None and os.getppid() != int(expected):
        return 0  # the parent died before the guard was armed
    os.execv(sys.executable, [sys.executable, *args])  # noqa: S606 - our own interpreter
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())
