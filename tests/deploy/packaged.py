"""`chalice package`, run once per variant per test session, and its template made CloudFormation.

Packaging is the slow part of this tier, so every test module asks ``build`` for a variant and
gets the same output directory back. The SAM transform runs offline, as CloudFormation's would
after `aws cloudformation package` has uploaded the zip.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MERGE_TEMPLATE = ROOT / "infra" / "chalice-merge.yaml"
REGION = "eu-west-1"
STAGES = ("dev", "prod")
# What `aws cloudformation package` writes in place of the local CodeUri.
UPLOADED_CODE = "s3://lambdamesh-artifacts/0123456789abcdef0123456789abcdef"
# Values in the shape the network stack's outputs have, for the offline transform only.
NETWORK_OUTPUTS = {
    "SubnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-0f1e2d3c4b5a69788"],
    "SecurityGroupIds": ["sg-0123456789abcdef0"],
    "AllowedNetworks": ["10.0.0.0/20", "10.0.16.0/20"],
}


@dataclass(frozen=True)
class Package:
    """One `chalice package` output directory."""

    stage: str
    merged: bool
    out: Path

    @property
    def zip(self) -> Path:
        return self.out / "deployment.zip"

    @cached_property
    def sam(self) -> dict[str, Any]:
        """The SAM template as Chalice wrote it (YAML when a YAML template was merged)."""
        if self.merged:
            return load_yaml_template((self.out / "sam.yaml").read_text())
        loaded: dict[str, Any] = json.loads((self.out / "sam.json").read_text())
        return loaded

    @cached_property
    def cloudformation(self) -> dict[str, Any]:
        """What CloudFormation deploys: the SAM transform's output."""
        parameters = NETWORK_OUTPUTS if self.merged else {}
        return sam_transform(uploaded(self.sam), parameters)

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        found = self.cloudformation["Resources"].items()
        return {name: r for name, r in found if r["Type"] == kind}

    def function_environment(self) -> dict[str, Any]:
        variables: dict[str, Any] = self.sam["Resources"]["APIHandler"]["Properties"][
            "Environment"
        ]["Variables"]
        return variables

    def zip_sizes(self) -> tuple[int, int]:
        """(bytes on disk, bytes unpacked)."""
        with zipfile.ZipFile(self.zip) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
        return self.zip.stat().st_size, unpacked


_built: dict[tuple[str, bool], Package] = {}


def build(stage: str, tmp_path_factory: pytest.TempPathFactory, merged: bool = False) -> Package:
    """The package of ``stage`` (with infra/chalice-merge.yaml when ``merged``), built once."""
    key = (stage, merged)
    if key not in _built:
        out = tmp_path_factory.mktemp("chalice-package") / f"{stage}{'-merged' if merged else ''}"
        command = [str(Path(sys.executable).parent / "chalice"), "package", "--stage", stage]
        if merged:
            command += ["--merge-template", str(MERGE_TEMPLATE.relative_to(ROOT))]
        result = subprocess.run(
            [*command, str(out)],
            cwd=ROOT,
            env={**os.environ, "AWS_DEFAULT_REGION": REGION},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        _built[key] = Package(stage, merged, out)
    return _built[key]


def load_yaml_template(text: str) -> dict[str, Any]:
    """YAML with CloudFormation's short tags, read by the loader Chalice merges with."""
    from chalice.package import YAMLTemplateSerializer

    loaded: dict[str, Any] = YAMLTemplateSerializer().load_template(text)
    return loaded


def uploaded(sam: dict[str, Any]) -> dict[str, Any]:
    """The template as `aws cloudformation package` leaves it: the zip's CodeUri on S3."""
    template = copy.deepcopy(sam)
    properties = template["Resources"]["APIHandler"]["Properties"]
    assert properties["CodeUri"] == "./deployment.zip"
    properties["CodeUri"] = UPLOADED_CODE
    return template


class _NoManagedPolicies:
    """The transform asks for AWS managed policy ARNs only when a function names one by
    name; Chalice's functions use their own role, so there is nothing to look up."""

    def load(self) -> dict[str, str]:
        return {}


def sam_transform(template: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    from samtranslator.translator.transform import transform

    # Metadata (checkov's inline skips) passes through to the generated resources.
    transformed: dict[str, Any] = transform(
        copy.deepcopy(template), dict(parameters), _NoManagedPolicies(), passthrough_metadata=True
    )
    return transformed
