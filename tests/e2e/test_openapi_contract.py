"""The registry API against its own OpenAPI document: schemathesis, run as a user would run it
against `lambdamesh dev`, finds no server error and no answer the document does not allow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.processes import Process, http
from tests.helpers import admin_token

SCHEMATHESIS = Path(sys.executable).parent / "st"


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(
    dev_server: Process, tmp_path: Path
) -> None:
    url = dev_server.wait_for_line(r"ready on (http://\S+)").group(1)
    assert http("GET", f"{url}/registry/openapi.json").status == 200

    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{url}/registry/openapi.json",
            "--header",
            f"Authorization: Bearer {admin_token()}",
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--max-examples",
            "20",
            "--generation-deterministic",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SCHEMATHESIS_TELEMETRY": "false"},
    )

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
