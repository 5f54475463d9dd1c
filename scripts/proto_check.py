"""Fail when the checked-in stubs differ from what `make proto` would generate."""

from __future__ import annotations

import pathlib
import sys
import tempfile

from gen_proto import PACKAGE, ROOT, generate
from tree_diff import tree_drift


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        generate(pathlib.Path(tmp))
        drift = tree_drift(pathlib.Path(tmp) / PACKAGE, ROOT / "clients" / "python" / PACKAGE)
    if drift:
        print("generated stubs drift from protos/ — run `make proto` and commit:\n  " + "\n  ".join(drift))
        return 1
    print("proto stubs up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
