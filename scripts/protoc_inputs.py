"""What every stub generator hands protoc: the proto files under protos/ and the include dirs."""

from __future__ import annotations

import pathlib

import grpc_tools

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def proto_files() -> list[str]:
    """Every .proto below protos/, relative to it, sorted (protoc's argument order is output order)."""
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def include_args() -> list[str]:
    """-I flags: protos/ and the well-known types shipped with grpcio-tools."""
    return [f"-I{PROTOS}", f"-I{pathlib.Path(grpc_tools.__file__).parent / '_proto'}"]
