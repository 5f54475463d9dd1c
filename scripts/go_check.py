"""Fail when the Go stubs drift from protos/ or clients/go does not build (`make go-check`).

Offline, with Debian's Go packages only: `apt-get install DEBIAN_PACKAGES` (below). The build runs in
GOPATH mode over /usr/share/gocode (where those packages put their sources), so no module
proxy is asked; clients/go is linked into a scratch GOPATH under its module path.
With `--build-to DIR` the example programs' binaries are left in DIR.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

from gen_go import GO, GO_MODULE, generate
from tree_diff import tree_drift

DEBIAN_GOPATH = pathlib.Path("/usr/share/gocode")
# NOTE: golang-github-golang-protobuf-1-5-dev must be named: grpc-dev is content with the 1.3
# package, whose APIv1-only runtime panics on the APIv2 messages protoc-gen-go 1.28 writes.
DEBIAN_PACKAGES = (
    "golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-google-protobuf-dev "
    "golang-github-golang-protobuf-1-5-dev"
)
REQUIRED_SOURCES = {
    "google.golang.org/grpc": "golang-google-grpc-dev",
    "google.golang.org/protobuf": "golang-google-protobuf-dev",
    # wrappers.go exists from github.com/golang/protobuf 1.4 on (the APIv2-backed releases).
    "github.com/golang/protobuf/proto/wrappers.go": "golang-github-golang-protobuf-1-5-dev",
}


def _go(args: list[str], gopath: pathlib.Path, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{gopath}:{DEBIAN_GOPATH}",
        "GOFLAGS": "",
        "GOPROXY": "off",
        "GOCACHE": os.environ.get("GOCACHE", str(pathlib.Path(tempfile.gettempdir()) / "tendril-gocache")),
    }
    return subprocess.run(["go", *args], cwd=cwd, env=env, capture_output=True, text=True)


def build(into: pathlib.Path | None) -> list[str]:
    """Problems found by `go build` and `go vet` of clients/go (empty when it builds)."""
    if shutil.which("go") is None:
        return [f"go is not installed: `apt-get install {DEBIAN_PACKAGES}`"]
    missing = [
        f"{source} (`apt-get install {package}`)"
        for source, package in REQUIRED_SOURCES.items()
        if not (DEBIAN_GOPATH / "src" / source).exists()
    ]
    if missing:
        return [f"{DEBIAN_GOPATH}/src lacks " + ", ".join(missing)]
    with tempfile.TemporaryDirectory(prefix="tendril-gopath-") as tmp:
        gopath = pathlib.Path(tmp)
        link = gopath / "src" / GO_MODULE
        link.parent.mkdir(parents=True)
        link.symlink_to(GO, target_is_directory=True)
        problems = []
        for args in (["build", "./..."], ["vet", "./..."]):
            done = _go(args, gopath, link)
            if done.returncode != 0:
                problems.append(f"go {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        if into is not None and not problems:
            into.mkdir(parents=True, exist_ok=True)
            done = _go(["build", "-o", str(into.resolve()), "./examples/..."], gopath, link)
            if done.returncode != 0:
                problems.append(f"go build of the examples failed:\n{done.stdout}{done.stderr}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-to", type=pathlib.Path, help="leave the example binaries in this directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(pathlib.Path(tmp))
        drift = tree_drift(pathlib.Path(tmp) / "tendril", GO / "tendril", "tendril/")
    if drift:
        print("Go stubs drift from protos/ — run `make proto-go` and commit clients/go:\n  " + "\n  ".join(drift))
        return 1
    problems = build(args.build_to)
    if problems:
        print("\n".join(problems))
        return 1
    print("go stubs up to date and clients/go builds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
