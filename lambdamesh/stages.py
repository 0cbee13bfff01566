"""A Chalice stage's deployed settings: checked before packaging, written from stack outputs.

`.chalice/config.json` is Chalice's own file; these functions read and write it as Chalice
does (a stage's values over the top-level ones, environment variables merged), so what is
checked here is what `chalice deploy` and `chalice package` will use.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.config import Settings
from chalicelib.errors import ConfigError

CONFIG_FILE = Path(".chalice") / "config.json"
# The network stack's outputs that a stage needs (infra/network.yaml).
NETWORK_OUTPUTS = ("SubnetIds", "SecurityGroupIds", "AllowedNetworks")
# Outputs of the other stacks that, when given, name the stage's table and signing key.
OPTIONAL_OUTPUTS = {
    "TableName": "LAMBDAMESH_TABLE",
    "SigningKeySecretName": "LAMBDAMESH_SIGNING_KEY_SECRET",
}


@dataclass(frozen=True)
class StageDeployment:
    """What Chalice will deploy for one stage."""

    name: str
    environment: dict[str, str]
    subnet_ids: list[str]
    security_group_ids: list[str]


def load(project_dir: Path) -> dict[str, Any]:
    path = project_dir / CONFIG_FILE
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run this in the lambdamesh project") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return loaded


def save(project_dir: Path, config: Mapping[str, Any]) -> None:
    """Replace the file in one rename, so an interrupted write never leaves half a file."""
    path = project_dir / CONFIG_FILE
    text = json.dumps(config, indent=2) + "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


def view(config: Mapping[str, Any], stage: str) -> StageDeployment:
    stages = config.get("stages") or {}
    if stage not in stages:
        known = ", ".join(sorted(stages)) or "none"
        raise ConfigError(f"stage {stage!r} is not in {CONFIG_FILE} (stages: {known})")
    settings = stages[stage]
    return StageDeployment(
        name=stage,
        environment={
            **(config.get("environment_variables") or {}),
            **(settings.get("environment_variables") or {}),
        },
        subnet_ids=list(settings.get("subnet_ids", config.get("subnet_ids")) or []),
        security_group_ids=list(
            settings.get("security_group_ids", config.get("security_group_ids")) or []
        ),
    )


def problems(stage: StageDeployment) -> list[str]:
    """Every reason this stage must not be deployed, each one line; empty when it may."""
    found: list[str] = []
    try:
        settings = Settings.from_environ(stage.environment)
    except ConfigError as exc:
        return [exc.message]
    refusal = settings.routing_refusal()
    if refusal:
        found.append(f"{refusal} (run `lambdamesh configure --stage {stage.name} ...`)")
    if settings.allow_private and not (stage.subnet_ids and stage.security_group_ids):
        found.append(
            "subnet_ids and security_group_ids are not set: outside the tasks' VPC the "
            "Lambda cannot reach a task"
        )
    if settings.signing_key is not None:
        found.append(
            "LAMBDAMESH_SIGNING_KEY holds the key itself, readable by anyone who may read "
            "the function's configuration: name a secret in LAMBDAMESH_SIGNING_KEY_SECRET"
        )
    elif not (settings.signing_key_secret or settings.signing_key_parameter):
        found.append("no signing key: set LAMBDAMESH_SIGNING_KEY_SECRET")
    return found


# The Lambda runtimes lambdamesh is built and tested for, on Amazon Linux 2023. Chalice names
# the function's runtime after the Python that runs `chalice package` or `chalice deploy`.
# python3.11 runs on Amazon Linux 2, which SnapStart does not support, and AWS deprecates it
# first (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html).
SUPPORTED_RUNTIMES = ("python3.12", "python3.13")


def runtime_problem(version: tuple[int, int] | None = None) -> str | None:
    """Why the Python running this (and so Chalice) would deploy an unsupported runtime;
    None when it would deploy a supported one."""
    major, minor = version or (sys.version_info.major, sys.version_info.minor)
    runtime = f"python{major}.{minor}"
    if runtime in SUPPORTED_RUNTIMES:
        return None
    return (
        f"this Python deploys the Lambda runtime {runtime} (Chalice names the runtime after "
        f"the Python that runs it); lambdamesh is built and tested for "
        f"{' and '.join(SUPPORTED_RUNTIMES)}, which SnapStart supports: make the venv with "
        "Python 3.12 or 3.13 (`make install` finds one on PATH or through pyenv)"
    )


def warnings(stage: StageDeployment, version: tuple[int, int] | None = None) -> list[str]:
    """What a stage may deploy with, but an operator should know: each one line."""
    found = []
    settings = Settings.from_environ(stage.environment)
    if settings.edge_default == "open":
        found.append(
            "LAMBDAMESH_EDGE_DEFAULT is open: every registered service without an exposure "
            "document is served to anyone on the internet, internal ones included; leave it "
            "unset (closed) and declare the public ones (lambdamesh exposure set)"
        )
    if settings.mtls_default == "permissive":
        found.append(
            "LAMBDAMESH_MTLS_DEFAULT is permissive (the default): services without a policy "
            "saying strict accept plain text on their inbound ports, from callers with no "
            "identity; set it to strict once every caller has a mesh certificate"
        )
    if not settings.mesh_ca_secret and not settings.mesh_ca:
        found.append(
            "no mesh CA (LAMBDAMESH_MESH_CA_SECRET): the stage issues no service certificate, "
            "so no sidecar serves an inbound port and instances marked tls cannot be called "
            "(502 mtls_unavailable); see docs/mtls.md"
        )
    runtime = runtime_problem(version)
    if runtime:
        found.append(runtime)
    return found


def configure(config: dict[str, Any], stage: str, outputs: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``config`` with the stage's network (and, when given, table and key) set
    from stack outputs; refuses outputs that would leave the stage unsafe."""
    missing = [key for key in NETWORK_OUTPUTS if not str(outputs.get(key) or "").strip()]
    if missing:
        raise ConfigError(
            f"the stack outputs lack {', '.join(missing)}: give the network stack "
            "(infra/network.yaml), whose outputs name the subnets, the Lambda's security "
            "group and the networks the gateway may reach"
        )
    view(config, stage)
    updated = json.loads(json.dumps(config))
    settings = updated["stages"][stage]
    settings["subnet_ids"] = _split(outputs["SubnetIds"])
    settings["security_group_ids"] = _split(outputs["SecurityGroupIds"])
    environment = settings.setdefault("environment_variables", {})
    environment["LAMBDAMESH_ALLOWED_NETWORKS"] = ",".join(_split(outputs["AllowedNetworks"]))
    for output, variable in OPTIONAL_OUTPUTS.items():
        if outputs.get(output):
            environment[variable] = outputs[output]
    return dict(updated)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def outputs_from_file(path: Path) -> dict[str, str]:
    """Stack outputs saved as `describe-stacks` prints them, as its `Outputs` list, or as a
    plain ``{"Key": "value"}`` object; several stacks' outputs are merged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read stack outputs from {path}: {exc}") from None
    if isinstance(data, dict) and "Stacks" in data:
        data = [o for stack in data["Stacks"] for o in stack.get("Outputs") or []]
    if isinstance(data, list):
        return _output_list(data, str(path))
    if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
        return {str(k): v for k, v in data.items()}
    raise ConfigError(
        f"{path} must hold describe-stacks output, an Outputs list or a JSON object of strings"
    )


def _output_list(items: list[Any], source: str) -> dict[str, str]:
    try:
        return {str(o["OutputKey"]): str(o["OutputValue"]) for o in items}
    except (KeyError, TypeError):
        raise ConfigError(f"{source}: each output needs OutputKey and OutputValue") from None


def outputs_from_stacks(names: list[str]) -> dict[str, str]:
    """The outputs of deployed stacks, read with the usual AWS environment."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    merged: dict[str, str] = {}
    for name in names:
        try:
            client = boto3.client("cloudformation")
            [stack] = client.describe_stacks(StackName=name)["Stacks"]
        except (BotoCoreError, ClientError) as exc:
            raise ConfigError(f"cannot read stack {name!r}: {exc}") from None
        merged.update(_output_list(stack.get("Outputs") or [], f"stack {name!r}"))
    return merged
