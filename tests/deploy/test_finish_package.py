"""`lambdamesh finish-package`: bytecode Lambda loads without reading a source, botocore data
for the app's services only, refusals that leave the zip as it was.

Small packages in the shape `chalice package` writes keep these fast; `test_lambda_zip.py`
runs the real package finished.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lambdamesh.cli import main
from lambdamesh.finishing import AWS_SERVICES, PackageError, finish, interpreter_runtime

ENDPOINTS = {
    "version": 3,
    "partitions": [
        {
            "partition": "aws",
            "regions": {"eu-west-1": {"description": "Europe (Ireland)"}},
            "services": {
                "dynamodb": {"endpoints": {"eu-west-1": {}, "local": {"hostname": "localhost"}}},
                "s3": {"endpoints": {"eu-west-1": {}}},
                "ssm": {"endpoints": {"eu-west-1": {}}},
            },
        },
        {"partition": "aws-cn", "regions": {}, "services": {"ec2": {"endpoints": {}}}},
    ],
}
SOURCES = {
    "app.py": "from chalicelib import answer\n",
    "chalicelib/__init__.py": "",
    "chalicelib/answer.py": "VALUE = 42\n",
    "botocore/__init__.py": "",
    "botocore/data/endpoints.json": json.dumps(ENDPOINTS),
    "botocore/data/partitions.json": "{}",
    "botocore/data/dynamodb/2012-08-10/service-2.json.gz": "gz",
    "botocore/data/secretsmanager/2017-10-17/service-2.json.gz": "gz",
    "botocore/data/ssm/2014-11-06/service-2.json.gz": "gz",
    "botocore/data/s3/2006-03-01/service-2.json.gz": "gz",
    "botocore/data/ec2/2016-11-15/service-2.json.gz": "gz",
}

MakePackage = Callable[..., Path]


def sam(runtime: str) -> dict[str, object]:
    return {
        "Resources": {
            "APIHandler": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"Runtime": runtime, "Handler": "app.app"},
            }
        }
    }


@pytest.fixture
def make_package(tmp_path: Path) -> MakePackage:
    def make(runtime: str | None = None, yaml: bool = False) -> Path:
        out = tmp_path / "out"
        out.mkdir()
        with zipfile.ZipFile(out / "deployment.zip", "w", zipfile.ZIP_DEFLATED) as archive:
            for name, text in SOURCES.items():
                archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), text)
        declared = runtime or interpreter_runtime()
        if yaml:
            (out / "sam.yaml").write_text(
                "Resources:\n  APIHandler:\n    Type: AWS::Serverless::Function\n"
                f"    Properties:\n      Runtime: {declared}\n      Handler: app.app\n"
            )
        else:
            (out / "sam.json").write_text(json.dumps(sam(declared)))
        return out

    return make


def names(out: Path) -> set[str]:
    with zipfile.ZipFile(out / "deployment.zip") as archive:
        return set(archive.namelist())


def unpack(out: Path, into: Path) -> Path:
    with zipfile.ZipFile(out / "deployment.zip") as archive:
        archive.extractall(into)
    return into


def test_every_module_gets_bytecode_for_this_interpreter(make_package: MakePackage) -> None:
    out = make_package()

    done = finish(out)

    tag = sys.implementation.cache_tag
    found = names(out)
    for source in (n for n in SOURCES if n.endswith(".py")):
        folder, _, module = source.rpartition("/")
        compiled = f"{folder + '/' if folder else ''}__pycache__/{module[:-3]}.{tag}.pyc"
        assert compiled in found
    assert done.compiled == 4


def test_the_bytecode_is_used_without_reading_the_sources(
    make_package: MakePackage, tmp_path: Path
) -> None:
    """As on Lambda: no site-packages, nothing written; a source that would fail if read."""
    out = make_package()
    finish(out)
    task = unpack(out, tmp_path / "task")
    (task / "chalicelib" / "answer.py").write_text("raise SystemExit('the source was read')\n")

    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-B",
            "-c",
            f"import sys; sys.path.insert(0, {str(task)!r}); import app; print(app.answer.VALUE)",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"


def test_botocore_keeps_its_shared_files_and_the_apps_services_only(
    make_package: MakePackage,
) -> None:
    out = make_package()

    done = finish(out)

    services = {
        n.split("/")[2] for n in names(out) if n.startswith("botocore/data/") and n.count("/") > 2
    }
    assert services == AWS_SERVICES
    assert {"botocore/data/endpoints.json", "botocore/data/partitions.json"} <= names(out)
    assert done.dropped == 2


def test_endpoints_keep_every_partition_and_only_the_apps_services(
    make_package: MakePackage,
) -> None:
    out = make_package()

    finish(out)

    with zipfile.ZipFile(out / "deployment.zip") as archive:
        endpoints = json.loads(archive.read("botocore/data/endpoints.json"))
    [aws, china] = endpoints["partitions"]
    assert aws["services"] == {
        "dynamodb": ENDPOINTS["partitions"][0]["services"]["dynamodb"],  # type: ignore[index]
        "ssm": {"endpoints": {"eu-west-1": {}}},
    }
    assert aws["regions"] == {"eu-west-1": {"description": "Europe (Ireland)"}}
    assert china == {"partition": "aws-cn", "regions": {}, "services": {}}
    assert endpoints["version"] == 3


def test_finishing_twice_writes_the_same_zip(make_package: MakePackage) -> None:
    out = make_package()
    finish(out)
    first = (out / "deployment.zip").read_bytes()

    again = finish(out)

    assert (out / "deployment.zip").read_bytes() == first
    assert again.compiled == 0 and again.dropped == 0


def test_a_merged_yaml_template_is_read_too(make_package: MakePackage) -> None:
    out = make_package(yaml=True)

    assert finish(out).runtime == interpreter_runtime()


@pytest.mark.parametrize(
    "runtime", ["python3.9", "python3.13" if sys.version_info[:2] != (3, 13) else "python3.12"]
)
def test_another_runtime_is_refused_and_the_zip_left_as_it_was(
    make_package: MakePackage, runtime: str
) -> None:
    out = make_package(runtime=runtime)
    before = (out / "deployment.zip").read_bytes()

    with pytest.raises(PackageError, match=f"runtime is {runtime} but this is"):
        finish(out)

    assert (out / "deployment.zip").read_bytes() == before
    assert [p.name for p in out.iterdir()] == [p.name for p in out.iterdir() if p.is_file()]


def test_the_command_reports_and_refuses_in_one_line(
    make_package: MakePackage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = make_package()

    assert main(["finish-package", str(out)]) == 0
    assert "4 modules compiled" in capsys.readouterr().out
    assert main(["finish-package", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lambdamesh: ") and "chalice package" in error
    assert error.count("\n") == 1
