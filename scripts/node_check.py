"""Fail when the checked-in Node stubs differ from what `make proto-node` would generate.

Needs the Node tool chain: `npm ci --prefix clients/node`.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

from gen_node import NODE, generate
from tree_diff import tree_drift


def main() -> int:
    # NOTE: the scratch copy lives inside clients/node/node_modules (ignored by git, removed on
    # exit) because tsc resolves the stubs' imports by searching upward for node_modules.
    with tempfile.TemporaryDirectory(dir=NODE / "node_modules", prefix=".tendril-node-check-") as tmp:
        fresh = pathlib.Path(tmp)
        generate(fresh)
        drift = [line for part in ("src", "lib") for line in tree_drift(fresh / part, NODE / part, f"{part}/")]
    if drift:
        print("Node stubs drift from protos/ — run `make proto-node` and commit clients/node:")
        print("  " + "\n  ".join(drift))
        return 1
    print("node stubs up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
