"""The README's worked session runs as written, against `lambdamesh dev --demo`: the block is
read from the README and run by bash, the demo's port being the only change."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

from tests.e2e.processes import ROOT, spawn

MARKER = "A session from a second terminal:"


def session_block() -> str:
    text = (ROOT / "README.md").read_text()
    after = text[text.index(MARKER) :]
    match = re.search(r"```sh\n(.*?)```", after, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_the_readme_session_runs_as_written() -> None:
    demo = spawn("demo", ["-m", "lambdamesh.cli", "dev", "--demo", "--port", "0"])
    try:
        url = demo.wait_for_line(r"ready on (http://\S+)", timeout=60).group(1)
        console = demo.wait_for_line(r"Dashboard: (http://\S+)/dashboard", timeout=60).group(1)
        script = session_block().replace("http://127.0.0.1:8000", url)
        script = script.replace("http://127.0.0.1:8001", console)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("LAMBDAMESH_")},
        )
        crash = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", crash_lines(demo.output)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"},
        )
    finally:
        demo.signal(signal.SIGTERM)
        demo.popen.wait(30)

    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout
    assert '"instance": "hello-' in output
    assert re.search(r"^hello\s+2\s+2\s", output, re.MULTILINE)
    assert re.search(r"^by-hand\s+v1\s+127\.0\.0\.1\s+9\s", output, re.MULTILINE)
    assert f"{console}/dashboard" in output
    assert "ping" in output
    # The printed crash: hello-1's processes killed, its stop event handed in, and it is gone.
    assert crash.returncode == 0, crash.stdout + crash.stderr
    assert '"outcome": "removed"' in crash.stdout
    listed = json.loads(crash.stdout.strip().splitlines()[-1])
    left = {i["instance_id"] for i in listed["instances"]}
    assert "hello-1" not in left
    assert "hello-0" in left


def crash_lines(output: str) -> str:
    """The commands the demo prints under "Crash the hello-1 task"."""
    lines = output.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("Crash the hello-1 task"))
    commands = [line.strip() for line in lines[start + 2 : start + 5]]
    assert [c.split()[0] for c in commands] == ["kill", "lambdamesh", "curl"], commands
    return "\n".join(commands)
