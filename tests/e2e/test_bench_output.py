"""`make bench`'s log-bytes figures as a reader (or a script, with ``--json``) gets them."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.bench.bench_log_bytes import PRICED
from tests.e2e.processes import ROOT


def test_the_log_bytes_bench_prints_its_figures_and_nothing_else() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_log_bytes", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    # Neither moto's request log on stderr nor the app's set-up lines on stdout
    assert done.stderr == ""
    figures = json.loads(done.stdout)
    assert set(PRICED) <= set(figures)
