"""What a cold start loads: the Lambda's initialisation (its priming included) and a first
routed request, in a fresh interpreter, load none of the modules that only other requests
need. Those load at the first request that needs them, and every route of theirs is
exercised by the functional tests of its own. Nor do they create a dataclass but the
settings: Python 3.11 compiles each method a dataclass generates, several times what a named
tuple or a class written out costs a cold start.

DynamoDB is moto's server; the instance is registered through the store beforehand, so the
interpreter under test makes no registration.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chalicelib.instances import Registration
from chalicelib.storage import InstanceStore
from lambdamesh.testclient import LANES, Lane
from tests.functional.conftest import Upstream

ROOT = Path(__file__).resolve().parents[2]

# Modules of requests that are neither routed nor the cold start's priming: the OpenAPI
# document, the dashboard's pages, the routing view sidecars poll (and its document), the
# operator's exposure and key management, the registry's writes (their body rules, the
# schema engine, the registration they make), the intentions sidecars enforce, and the
# figures of calls the registry's answers carry.
LOADED_ON_FIRST_USE = (
    "chalicelib.openapi",
    "chalicelib.pages",
    "chalicelib.views",
    "lambdamesh_routing.wire",
    "chalicelib.exposure.management",
    "chalicelib.validation",
    "fastjsonschema",
    "chalicelib.registration",
    "lambdamesh_routing.intentions",
    "chalicelib.figures",
)

# Initialises as Lambda does (the stage's environment, then the function's name, so the app
# primes at import), routes one GET, and prints whether it primed, which of the modules
# named in argv[3] it loaded, and the dataclasses the project's modules it loaded define.
COLD_START = """
import dataclasses, json, os, sys
from pathlib import Path
from lambdamesh.projectconfig import ProjectConfig
environment = {
    **ProjectConfig.load(Path("."), "dev").environment_variables,
    **json.loads(sys.argv[1]),
    "AWS_LAMBDA_FUNCTION_NAME": "lambdamesh-test",
}
os.environ.update(environment)
import app
from chalicelib import wiring
from lambdamesh.testclient import create_test_client
client = create_test_client(app.app, environment_variables=environment, lane=sys.argv[2])
answer = client.http.get("/api/v1/orders/v1/x")
assert answer.status_code == 200, answer.body
print("primed:", wiring.store.cache_info().currsize == 1)
print("loaded:" + ",".join(m for m in sys.argv[3].split(",") if m in sys.modules))
ours = ("chalicelib", "lambdamesh_routing")
own = [m for n, m in list(sys.modules.items()) if n.split(".")[0] in ours]
print("dataclasses:" + ",".join(sorted(
    f"{m.__name__}.{name}"
    for m in own
    for name, value in vars(m).items()
    if dataclasses.is_dataclass(value) and getattr(value, "__module__", None) == m.__name__
)))
"""


def cold_start(environment: dict[str, str], lane: Lane) -> list[str]:
    """The probe's output lines, or its error output if it failed."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            COLD_START,
            json.dumps(environment),
            lane,
            ",".join(LOADED_ON_FIRST_USE),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout.splitlines() if result.returncode == 0 else [result.stderr]


@pytest.mark.parametrize("lane", LANES)
def test_initialisation_and_a_first_routed_request_load_no_module_only_other_requests_need(
    lane: Lane,
    environment: dict[str, str],
    store: InstanceStore,
    upstreams: Callable[[str], Upstream],
) -> None:
    upstream = upstreams("orders")
    registration = Registration("orders", "i-1", "v1", "127.0.0.1", upstream.port)
    store.register(registration, time.time())

    lines = cold_start(environment, lane)

    assert lines[-3:-1] == ["primed: True", "loaded:"], lines


def test_a_cold_start_creates_no_dataclass_but_the_settings(
    environment: dict[str, str],
    store: InstanceStore,
    upstreams: Callable[[str], Upstream],
) -> None:
    """``Settings`` stays one: its fields' class attributes are the collaborators' defaults
    (``tests/unit/test_defaults.py``), which a named tuple's or a slotted class's are not."""
    upstream = upstreams("orders")
    registration = Registration("orders", "i-1", "v1", "127.0.0.1", upstream.port)
    store.register(registration, time.time())

    lines = cold_start(environment, "rest")

    assert lines[-1] == "dataclasses:chalicelib.config.Settings", lines


def test_each_module_named_as_loaded_on_first_use_exists() -> None:
    """A module renamed or removed would otherwise pass the test above unnoticed."""
    assert all(importlib.util.find_spec(name) for name in LOADED_ON_FIRST_USE)
