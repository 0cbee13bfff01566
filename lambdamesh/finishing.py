"""`lambdamesh finish-package OUT`: a `chalice package` output made fast to cold-start.

Chalice zips sources only. Lambda unpacks the zip into a read-only ``/var/task``, so Python
can neither find nor write bytecode there and compiles every module it imports on every cold
start: several times the cost of importing them from bytecode. Chalice also bundles botocore's
data for every AWS service (most of the zip's 2,000-odd files), of which the app calls three.

Finishing the package, in place and in one atomic rename:

* compiles every ``.py`` into ``__pycache__`` as unchecked-hash bytecode (valid whatever the
  unpacked files' times; the zip is immutable), with this interpreter, which must be the
  runtime's version (it is when the same interpreter ran `chalice package`);
* keeps botocore's data for ``AWS_SERVICES`` and its shared files, and drops the rest;
* trims botocore's ``endpoints.json`` (1.2 MB, parsed by every cold start's first client) to
  those services' entries in each partition, which are kept as they were.

Running it twice changes nothing the second time. `docs/benchmarks.md` has the figures.
"""

from __future__ import annotations

import compileall
import json
import py_compile
import re
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from chalicelib.errors import LambdaMeshError

# The services the app builds clients for: DynamoDB (the registry, through PynamoDB), and
# Secrets Manager or SSM Parameter Store (the signing key, through Powertools Parameters).
AWS_SERVICES = frozenset({"dynamodb", "secretsmanager", "ssm"})
BOTOCORE_DATA = PurePosixPath("botocore/data")
ENDPOINTS = str(BOTOCORE_DATA / "endpoints.json")
ZIP_NAME = "deployment.zip"
TEMPLATES = ("sam.json", "sam.yaml")
_RUNTIME = re.compile(r"""["']?Runtime["']?\s*:\s*["']?(python\d+\.\d+)""")
# Chalice's entries carry this fixed time; the added bytecode does too, so a package built
# twice from the same sources is the same zip.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PackageError(LambdaMeshError):
    code = "package_error"


@dataclass(frozen=True)
class Finished:
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    compiled: int
    dropped: int
    runtime: str


def interpreter_runtime() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def runtimes(out: Path) -> set[str]:
    """The ``Runtime`` of every function in the package's template."""
    for name in TEMPLATES:
        template = out / name
        if template.is_file():
            text = template.read_text()
            if name.endswith(".json"):
                resources = json.loads(text).get("Resources", {})
                found = {
                    str(r["Properties"]["Runtime"])
                    for r in resources.values()
                    if r.get("Type") == "AWS::Serverless::Function"
                    and "Runtime" in r.get("Properties", {})
                }
            else:
                found = set(_RUNTIME.findall(text))
            return found
    raise PackageError(f"{out} holds no {' or '.join(TEMPLATES)}: is it `chalice package` output?")


def dropped(name: str) -> bool:
    """Whether the zip entry ``name`` is botocore data for a service the app never calls."""
    path = PurePosixPath(name)
    if path.parts[:2] != BOTOCORE_DATA.parts or len(path.parts) < 4:
        return False  # outside botocore/data, or one of its shared files
    return path.parts[2] not in AWS_SERVICES


def trimmed_endpoints(text: bytes) -> bytes:
    """``endpoints.json`` with each partition's services cut to ``AWS_SERVICES``."""
    endpoints = json.loads(text)
    for partition in endpoints.get("partitions", []):
        services = partition.get("services", {})
        partition["services"] = {k: v for k, v in services.items() if k in AWS_SERVICES}
    return json.dumps(endpoints, separators=(",", ":"), sort_keys=True).encode()


def finish(out: Path) -> Finished:
    """Finish ``out``'s ``deployment.zip`` in place; see the module's docstring."""
    archive = out / ZIP_NAME
    if not archive.is_file():
        raise PackageError(f"{archive} is missing: run `chalice package ... {out}` first")
    runtime = interpreter_runtime()
    declared = runtimes(out)
    if declared != {runtime}:
        raise PackageError(
            f"the template's runtime is {', '.join(sorted(declared)) or 'not declared'} but "
            f"this is {runtime}: bytecode only loads on the version that wrote it; run "
            f"`chalice package` and this command with the runtime's Python"
        )
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        tree = Path(scratch) / "task"
        with zipfile.ZipFile(archive) as source:
            entries = [e for e in source.infolist() if not e.is_dir()]
            kept = [e for e in entries if not dropped(e.filename)]
            for entry in kept:
                source.extract(entry, tree)
        endpoints = tree / ENDPOINTS
        if endpoints.is_file():
            endpoints.write_bytes(trimmed_endpoints(endpoints.read_bytes()))
        before = {e.filename for e in kept}
        if not compileall.compile_dir(
            tree,
            quiet=2,
            stripdir=str(tree),
            prependdir="/var/task",
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            workers=1,
        ):
            raise PackageError("some of the package's modules do not compile; see above")
        added = sorted(
            p.relative_to(tree).as_posix()
            for p in tree.rglob("*.pyc")
            if p.relative_to(tree).as_posix() not in before
        )
        staged = Path(scratch) / ZIP_NAME
        with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as target:
            for entry in kept:
                target.writestr(entry, (tree / entry.filename).read_bytes())
            for name in added:
                info = zipfile.ZipInfo(name, ZIP_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                target.writestr(info, (tree / name).read_bytes())
        bytes_before = archive.stat().st_size
        staged.replace(archive)
    return Finished(
        files_before=len(entries),
        files_after=len(kept) + len(added),
        bytes_before=bytes_before,
        bytes_after=archive.stat().st_size,
        compiled=len(added),
        dropped=len(entries) - len(kept),
        runtime=runtime,
    )


def finish_command(out: Path) -> int:
    done = finish(out)
    print(
        f"{out / ZIP_NAME}: {done.compiled} modules compiled for {done.runtime}, "
        f"{done.dropped} botocore data files dropped (kept: {', '.join(sorted(AWS_SERVICES))}); "
        f"{done.files_before} files, {done.bytes_before / 2**20:.1f} MiB -> "
        f"{done.files_after} files, {done.bytes_after / 2**20:.1f} MiB"
    )
    return 0
