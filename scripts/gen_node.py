"""Regenerate the Node stubs under clients/node from protos/ (used by `make proto-node`).

protoc comes from the Python package grpcio-tools (already in the venv); the JavaScript side
comes from clients/node/node_modules (`npm ci --prefix clients/node`): the ts-proto plugin
writes TypeScript for @grpc/grpc-js into src/, and tsc compiles it to CommonJS + .d.ts in lib/.
Both are checked in; `scripts/node_check.py` fails when they drift from protos/.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

from grpc_tools import protoc
from protoc_inputs import ROOT, include_args, proto_files

NODE = ROOT / "clients" / "node"
NODE_BIN = NODE / "node_modules" / ".bin"

# NOTE: annotateFilesWithVersion=false keeps protoc's version out of the files, so a different
# grpcio-tools build cannot make the drift check fail on a header line; the versions that
# matter (ts-proto, typescript) are pinned in package.json and package-lock.json.
TS_PROTO_OPTIONS = ",".join(
    [
        "outputServices=grpc-js",
        "esModuleInterop=true",
        "env=node",
        "outputIndex=true",
        "annotateFilesWithVersion=false",
    ]
)

# NOTE: passed on the command line (not a tsconfig.json) so the check compiles the temp copy
# with exactly the options the checked-in lib/ was compiled with.
TSC_OPTIONS = [
    "--target",
    "es2020",
    "--module",
    "commonjs",
    "--moduleResolution",
    "node10",
    "--declaration",
    "--strict",
    "--esModuleInterop",
    "--skipLibCheck",
    "--newLine",
    "lf",
]


def _tool(name: str) -> pathlib.Path:
    path = NODE_BIN / name
    if not path.exists():
        sys.exit(f"{path} is missing: install the Node tool chain first with `npm ci --prefix clients/node`")
    return path


def generate(out: pathlib.Path) -> None:
    """Write generated TypeScript to ``out/src`` and its compiled JavaScript to ``out/lib``.

    ``out`` must lie inside clients/node so tsc finds @grpc/grpc-js and @bufbuild/protobuf in
    clients/node/node_modules by the usual upward search.
    """
    if not out.resolve().is_relative_to(NODE):
        raise ValueError(f"{out} is not inside {NODE}: tsc could not resolve the stubs' npm dependencies")
    plugin, tsc = _tool("protoc-gen-ts_proto"), _tool("tsc")
    src, lib = out / "src", out / "lib"
    for folder in (src, lib):
        if folder.exists():
            shutil.rmtree(folder)
    src.mkdir(parents=True)
    args = [
        "grpc_tools.protoc",
        *include_args(),
        f"--plugin=protoc-gen-ts_proto={plugin}",
        f"--ts_proto_out={src}",
        f"--ts_proto_opt={TS_PROTO_OPTIONS}",
        *proto_files(),
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc with the ts-proto plugin failed")
    sources = sorted(str(p.relative_to(src)) for p in src.rglob("*.ts"))
    done = subprocess.run(
        [str(tsc), *TSC_OPTIONS, "--rootDir", ".", "--outDir", str(lib), *sources],
        cwd=src,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"tsc failed on the generated stubs:\n{done.stdout}{done.stderr}")


if __name__ == "__main__":
    generate(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else NODE)
