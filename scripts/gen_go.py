"""Regenerate the Go stubs under clients/go from protos/ (used by `make proto-go`).

protoc comes from the Python package grpcio-tools (in the venv); the Go plugins from Debian:
`apt-get install protoc-gen-go protoc-gen-go-grpc` (protoc-gen-go 1.28, protoc-gen-go-grpc 1.0).
Each proto package tendril.<area>.v1 becomes Go package <area>v1 at
tendril/clients/go/tendril/<area>/v1; the .proto files need no go_package option for that.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

from grpc_tools import protoc
from protoc_inputs import ROOT, include_args, proto_files

GO = ROOT / "clients" / "go"
GO_MODULE = "tendril/clients/go"
PLUGINS = ("protoc-gen-go", "protoc-gen-go-grpc")


def _plugin(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        sys.exit(f"{name} is not installed: `apt-get install protoc-gen-go protoc-gen-go-grpc` (Debian packages)")
    return path


def import_mapping(files: list[str]) -> str:
    """protoc-gen-go M options: tendril/job/v1/job.proto -> tendril/clients/go/tendril/job/v1;jobv1."""
    options = []
    for name in files:
        folder = pathlib.PurePosixPath(name).parent
        package = f"{folder.parent.name}{folder.name}"  # <area><version>, e.g. jobv1
        options.append(f"M{name}={GO_MODULE}/{folder};{package}")
    return ",".join(options)


def generate(out: pathlib.Path) -> None:
    """Write the .pb.go and _grpc.pb.go files into ``out/tendril/...``."""
    generated = out / "tendril"
    if generated.exists():
        shutil.rmtree(generated)
    out.mkdir(parents=True, exist_ok=True)
    files = proto_files()
    options = f"module={GO_MODULE},{import_mapping(files)}"
    args = [
        "grpc_tools.protoc",
        *include_args(),
        *[f"--plugin={name}={_plugin(name)}" for name in PLUGINS],
        f"--go_out={out}",
        f"--go_opt={options}",
        f"--go-grpc_out={out}",
        f"--go-grpc_opt={options}",
        *files,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc with the Go plugins failed")


if __name__ == "__main__":
    generate(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else GO)
