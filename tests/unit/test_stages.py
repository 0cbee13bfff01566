"""Stage settings: what `lambdamesh check` refuses and what `lambdamesh configure` writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from chalicelib.config import Settings
from chalicelib.errors import ConfigError
from lambdamesh import cli, stages

ROOT = Path(__file__).resolve().parents[2]
NETWORK = {
    "SubnetIds": "subnet-0a, subnet-0b",
    "SecurityGroupIds": "sg-0lambda",
    "AllowedNetworks": "10.0.0.0/20,10.0.16.0/20",
    "VpcId": "vpc-0123",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / ".chalice", tmp_path / ".chalice")
    return tmp_path


def shipped() -> dict[str, Any]:
    return stages.load(ROOT)


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_a_shipped_stage_is_refused_until_its_networks_are_named(stage: str) -> None:
    found = stages.problems(stages.view(shipped(), stage))

    assert any("LAMBDAMESH_ALLOWED_NETWORKS names no network" in p for p in found)
    assert any("subnet_ids and security_group_ids" in p for p in found)


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_shipped_stages_read_the_key_from_the_stage_secret_over_a_regional_api(
    stage: str,
) -> None:
    config = shipped()
    settings = config["stages"][stage]

    assert stages.view(config, stage).environment["LAMBDAMESH_SIGNING_KEY_SECRET"] == (
        f"lambdamesh/{stage}/signing-key"
    )
    assert settings["api_gateway_stage"] == stage
    assert config["api_gateway_endpoint_type"] == "REGIONAL"


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_shipped_stages_read_the_mesh_ca_from_the_stage_secret(stage: str) -> None:
    environment = stages.view(shipped(), stage).environment

    settings = Settings.from_environ(environment)

    assert settings.mesh_ca_secret == f"lambdamesh/{stage}/mesh-ca"
    # The CA's key lives in the secret, never in the function's configuration.
    assert settings.mesh_ca is None


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_a_configured_stage_passes_the_check(stage: str) -> None:
    config = stages.configure(shipped(), stage, NETWORK)

    assert stages.problems(stages.view(config, stage)) == []


def test_configure_writes_subnets_groups_and_networks_into_the_stage_only() -> None:
    config = stages.configure(shipped(), "prod", NETWORK)

    prod = config["stages"]["prod"]
    assert prod["subnet_ids"] == ["subnet-0a", "subnet-0b"]
    assert prod["security_group_ids"] == ["sg-0lambda"]
    assert prod["environment_variables"]["LAMBDAMESH_ALLOWED_NETWORKS"] == (
        "10.0.0.0/20,10.0.16.0/20"
    )
    assert config["stages"]["dev"] == shipped()["stages"]["dev"]


def test_configure_takes_the_table_and_key_when_those_outputs_are_given() -> None:
    outputs = {**NETWORK, "TableName": "my-table", "SigningKeySecretName": "my/key"}

    environment = stages.view(stages.configure(shipped(), "prod", outputs), "prod").environment

    assert environment["LAMBDAMESH_TABLE"] == "my-table"
    assert environment["LAMBDAMESH_SIGNING_KEY_SECRET"] == "my/key"


@pytest.mark.parametrize("missing", ["SubnetIds", "SecurityGroupIds", "AllowedNetworks"])
def test_configure_refuses_outputs_without_the_network(missing: str) -> None:
    outputs = {**NETWORK, missing: " "}

    with pytest.raises(ConfigError, match=missing):
        stages.configure(shipped(), "prod", outputs)


def test_an_unknown_stage_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"stage 'staging' .* \(stages: dev, prod\)"):
        stages.view(shipped(), "staging")


def test_a_key_held_in_the_environment_is_refused() -> None:
    config = stages.configure(shipped(), "prod", NETWORK)
    config["stages"]["prod"]["environment_variables"]["LAMBDAMESH_SIGNING_KEY"] = "x" * 32

    [problem] = stages.problems(stages.view(config, "prod"))

    assert "LAMBDAMESH_SIGNING_KEY holds the key itself" in problem


def test_an_invalid_network_is_reported_by_name() -> None:
    config = stages.configure(shipped(), "prod", {**NETWORK, "AllowedNetworks": "10.0.0.300/8"})

    [problem] = stages.problems(stages.view(config, "prod"))

    assert problem.startswith("LAMBDAMESH_ALLOWED_NETWORKS must be comma-separated CIDR blocks")


@pytest.mark.parametrize(
    "saved",
    [
        {"Stacks": [{"Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in NETWORK.items()]}]},
        [{"OutputKey": k, "OutputValue": v} for k, v in NETWORK.items()],
        NETWORK,
    ],
    ids=["describe-stacks", "outputs-list", "object"],
)
def test_outputs_files_are_read_in_each_shape_the_aws_cli_gives(
    tmp_path: Path, saved: object
) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(saved))

    assert stages.outputs_from_file(path) == NETWORK


def test_a_malformed_outputs_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text('[{"OutputKey": "SubnetIds"}]')

    with pytest.raises(ConfigError, match="each output needs OutputKey and OutputValue"):
        stages.outputs_from_file(path)


class TestTheCommands:
    def outputs(self, project: Path, **changes: str) -> str:
        path = project / "outputs.json"
        path.write_text(json.dumps({**NETWORK, **changes}))
        return str(path)

    def run(self, project: Path, *args: str) -> int:
        return cli.main([*args, "--project-dir", str(project)])

    def test_check_refuses_the_shipped_stage_with_one_line_reasons(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = self.run(project, "check", "--stage", "prod")

        errors = capsys.readouterr().err.splitlines()
        assert code == 2
        assert errors[0].startswith("lambdamesh: stage prod: LAMBDAMESH_ALLOW_PRIVATE is true")

    def test_configure_then_check_passes(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        configured = self.run(
            project, "configure", "--stage", "prod", "--outputs", self.outputs(project)
        )
        checked = self.run(project, "check", "--stage", "prod")

        assert (configured, checked) == (0, 0)
        assert capsys.readouterr().out.splitlines()[-1] == "stage prod is ready to deploy"

    def test_check_warns_of_an_open_edge_but_passes(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.run(project, "configure", "--stage", "prod", "--outputs", self.outputs(project))
        config_path = project / ".chalice" / "config.json"
        config = json.loads(config_path.read_text())
        config["stages"]["prod"]["environment_variables"]["LAMBDAMESH_EDGE_DEFAULT"] = "open"
        config_path.write_text(json.dumps(config))
        capsys.readouterr()

        checked = self.run(project, "check", "--stage", "prod")

        captured = capsys.readouterr()
        assert checked == 0
        assert "warning: LAMBDAMESH_EDGE_DEFAULT is open" in captured.err
        assert captured.out.splitlines()[-1] == "stage prod is ready to deploy"

    def test_check_warns_that_a_shipped_stage_takes_plain_text_inbound_but_passes(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.run(project, "configure", "--stage", "prod", "--outputs", self.outputs(project))
        capsys.readouterr()

        checked = self.run(project, "check", "--stage", "prod")

        captured = capsys.readouterr()
        assert checked == 0
        assert "warning: LAMBDAMESH_MTLS_DEFAULT is permissive" in captured.err
        assert "accept plain text on their inbound ports" in captured.err
        assert captured.out.splitlines()[-1] == "stage prod is ready to deploy"

    @pytest.mark.parametrize(
        ("networks", "reason"),
        [
            ("", "the stack outputs lack AllowedNetworks: give the network stack"),
            ("10.0.0.0/33", "LAMBDAMESH_ALLOWED_NETWORKS must be comma-separated CIDR blocks"),
        ],
        ids=["missing", "malformed"],
    )
    def test_configure_refuses_outputs_without_valid_networks_and_writes_nothing(
        self, project: Path, capsys: pytest.CaptureFixture[str], networks: str, reason: str
    ) -> None:
        before = (project / ".chalice" / "config.json").read_bytes()
        outputs = self.outputs(project, AllowedNetworks=networks)

        code = self.run(project, "configure", "--stage", "prod", "--outputs", outputs)

        [line] = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert line.startswith(f"lambdamesh: {reason}")
        assert (project / ".chalice" / "config.json").read_bytes() == before

    def test_configure_without_a_region_says_so_in_one_line(
        self, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(project / "no-such-config"))

        code = self.run(project, "configure", "--stage", "prod", "--network-stack", "net")

        [line] = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert line.startswith("lambdamesh: cannot read stack 'net': You must specify a region")


@pytest.mark.parametrize(
    ("mode", "warned"), [(None, True), ("", True), ("permissive", True), ("strict", False)]
)
def test_check_warns_unless_the_stages_inbound_ports_default_to_strict(
    mode: str | None, warned: bool
) -> None:
    config = stages.configure(shipped(), "prod", NETWORK)
    if mode is not None:
        config["stages"]["prod"]["environment_variables"]["LAMBDAMESH_MTLS_DEFAULT"] = mode

    found = stages.warnings(stages.view(config, "prod"), (3, 12))

    assert stages.problems(stages.view(config, "prod")) == []
    assert any(w.startswith("LAMBDAMESH_MTLS_DEFAULT is permissive") for w in found) is warned


@pytest.mark.parametrize(
    ("version", "supported"), [((3, 11), False), ((3, 12), True), ((3, 13), True)]
)
def test_check_names_the_runtimes_it_is_built_for(
    version: tuple[int, int], supported: bool
) -> None:
    problem = stages.runtime_problem(version)

    assert (problem is None) == supported
    if problem:
        assert f"python{version[0]}.{version[1]}" in problem
        assert "python3.12 and python3.13" in problem


@pytest.mark.parametrize(("secret", "warned"), [(None, False), ("", True)])
def test_check_warns_where_a_stage_names_no_mesh_ca(secret: str | None, warned: bool) -> None:
    config = stages.configure(shipped(), "prod", NETWORK)
    if secret is not None:
        config["stages"]["prod"]["environment_variables"]["LAMBDAMESH_MESH_CA_SECRET"] = secret

    found = stages.warnings(stages.view(config, "prod"), (3, 12))

    assert stages.problems(stages.view(config, "prod")) == []
    assert any(w.startswith("no mesh CA") for w in found) is warned
