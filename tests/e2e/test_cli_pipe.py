"""The `lambdamesh` command writing into a pipe whose reader stops early, as `| head -1` does."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.processes import ROOT

COST = ["cost", "--instances", "10", "--requests-per-second", "5", "--json"]
# One page, the least a pipe holds: the command's JSON is longer than what the pipe and the
# reader's one read take together, so the command is still writing when the pipe closes.
PIPE_SIZE = 4096


def test_a_reader_that_stops_after_one_line_ends_the_command_quietly() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "lambdamesh.cli", *COST],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pipesize=PIPE_SIZE,
    ) as process:
        assert process.stdout is not None
        # When the reader takes one line and closes its end
        first = process.stdout.readline()
        process.stdout.close()
        _, errors = process.communicate(timeout=60)

    assert first == b"{\n"
    # Then the command ends as Python's docs advise for a closed pipe: status 1 (which also
    # shows it met the closed pipe), and not a word on stderr, let alone a traceback
    assert process.returncode == 1
    assert errors.decode() == ""
