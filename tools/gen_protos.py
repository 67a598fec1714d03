"""Build everything generated from protos/: the one command behind `make gen`.

Outputs, all under gen/ (never edited, never committed):
- gen/ticketing/**/*_pb2.py, *_pb2.pyi, *_pb2_grpc.py, *_pb2_grpc.pyi: Python code and type stubs
- gen/descriptor.binpb: a FileDescriptorSet with imports and source info, for Envoy's gRPC-JSON
  transcoder and for server reflection (so grpcurl `describe` shows the comments)
- gen/third_party/google/...: the googleapis protos the contracts import, so `buf` can resolve
  them without a network registry
- a `ticketing-gen.pth` in the running interpreter's site-packages, so `import ticketing...`
  finds gen/ from any working directory

Runs only when a proto is newer than the outputs, unless --force.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import sysconfig
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN = ROOT / "gen"
DESCRIPTOR_SET = GEN / "descriptor.binpb"
THIRD_PARTY = GEN / "third_party"
# The googleapis protos ship inside the googleapis-common-protos wheel.
GOOGLEAPIS_FILES = (
    "google/api/annotations.proto",
    "google/api/http.proto",
    "google/api/field_behavior.proto",
    "google/api/httpbody.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
)
# Not imported by the contracts, but Envoy's transcoder needs their types in the descriptor set
# to render an error's google.rpc.Status with its ErrorInfo as a JSON body.
DESCRIPTOR_EXTRAS = ("google/rpc/status.proto", "google/rpc/error_details.proto")


def _googleapis_root() -> Path:
    import google.api.annotations_pb2 as annotations

    return Path(annotations.__file__).resolve().parent.parent.parent


def _well_known_root() -> Path:
    return Path(grpc_tools.__file__).resolve().parent / "_proto"


def _proto_files() -> list[Path]:
    return sorted(PROTOS.rglob("*.proto"))


def _up_to_date(sources: list[Path]) -> bool:
    if not DESCRIPTOR_SET.exists():
        return False
    built = DESCRIPTOR_SET.stat().st_mtime
    return all(p.stat().st_mtime <= built for p in [*sources, Path(__file__)])


def _copy_third_party() -> None:
    src_root = _googleapis_root()
    for rel in GOOGLEAPIS_FILES:
        dst = THIRD_PARTY / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src_root / rel, dst)


def _mypy_grpc_plugin() -> Path:
    plugin = Path(sys.executable).parent / "protoc-gen-mypy_grpc"
    if not plugin.exists():
        raise SystemExit(f"gen_protos: {plugin} is missing; install the dev extras (mypy-protobuf)")
    return plugin


def _install_path_file() -> None:
    pth = Path(sysconfig.get_paths()["purelib"]) / "ticketing-gen.pth"
    if not pth.exists() or pth.read_text().strip() != str(GEN):
        pth.write_text(f"{GEN}\n")


def generate(force: bool = False) -> bool:
    """Generate all outputs; returns False when they were already up to date."""
    _install_path_file()
    sources = _proto_files()
    if not sources:
        raise SystemExit(f"gen_protos: no .proto files under {PROTOS}")
    if not force and _up_to_date(sources):
        return False
    if GEN.exists():
        shutil.rmtree(GEN)
    GEN.mkdir(parents=True)
    _copy_third_party()
    rel_sources = [str(p.relative_to(PROTOS)) for p in sources]
    include = [
        f"--proto_path={PROTOS}",
        f"--proto_path={THIRD_PARTY}",
        f"--proto_path={_well_known_root()}",
    ]
    code = [
        f"--plugin=protoc-gen-mypy_grpc={_mypy_grpc_plugin()}",
        f"--python_out={GEN}",
        f"--pyi_out={GEN}",
        f"--grpc_python_out={GEN}",
        f"--mypy_grpc_out={GEN}",
    ]
    descriptors = [
        f"--descriptor_set_out={DESCRIPTOR_SET}",
        "--include_imports",
        "--include_source_info",
    ]
    for args in (
        [*include, *code, *rel_sources],
        [*include, *descriptors, *rel_sources, *DESCRIPTOR_EXTRAS],
    ):
        if protoc.main(["grpc_tools.protoc", *args]) != 0:
            raise SystemExit("gen_protos: protoc failed (see the messages above)")
    # Generated files import `ticketing.<domain>.v1`; make every level a regular package
    # so tools (mypy, pytest) resolve it the same way the interpreter does.
    for pkg_dir in {p.parent for p in GEN.joinpath("ticketing").rglob("*_pb2.py")}:
        d = pkg_dir
        while d != GEN:
            (d / "__init__.py").touch()
            d = d.parent
    (GEN / "py.typed").touch()
    _write_reasons()
    return True


# The error reasons: ticketing.common.v1.ErrorReason, as the Python StrEnum the services raise
# with (ticketing_common.errors.Reason), each member's value the reason sent on the wire.
REASONS_ENUM = ("ticketing/common/v1/common.proto", "ErrorReason", "ERROR_REASON_")
REASONS_MODULE = GEN / "ticketing" / "common" / "v1" / "reasons.py"


def _write_reasons() -> None:
    from google.protobuf import descriptor_pb2

    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes()).file
    source, name, prefix = REASONS_ENUM
    proto = next(f for f in files if f.name == source)
    index, enum = next((i, e) for i, e in enumerate(proto.enum_type) if e.name == name)
    comments = {
        tuple(loc.path): loc.leading_comments.strip()
        for loc in proto.source_code_info.location
        if loc.leading_comments
    }
    lines = [
        f'"""{proto.package}.{name}, as a Python enum: generated by tools/gen_protos.py from',
        f'{source}; never edited."""',
        "",
        "import enum",
        "",
        "",
        "class Reason(enum.StrEnum):",
        '    """Every ErrorInfo.reason the services emit. Add (in the proto); never rename or',
        '    reuse."""',
        "",
    ]
    for i, value in enumerate(enum.value):
        if value.number == 0:
            continue
        doc = comments.get((5, index, 2, i), "")
        reason = value.name.removeprefix(prefix)
        lines.append(f"    {reason} = {reason!r}")
        if doc:
            lines.append(f"    {' '.join(doc.split())!r}")
    REASONS_MODULE.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date")
    ns = parser.parse_args()
    changed = generate(force=ns.force)
    print(f"gen_protos: {'generated' if changed else 'up to date'}: {GEN.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
