"""Fail when the checked-in stubs differ from what `make proto` would generate."""

from __future__ import annotations

import filecmp
import pathlib
import sys
import tempfile

from gen_proto import ROOT, generate


def main() -> int:
    checked_in = ROOT / "clients" / "python" / "tendril"
    with tempfile.TemporaryDirectory() as tmp:
        generate(pathlib.Path(tmp))
        fresh = pathlib.Path(tmp) / "tendril"
        drift = []
        fresh_files = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
        old_files = {
            p.relative_to(checked_in) for p in checked_in.rglob("*") if p.is_file() and "__pycache__" not in p.parts
        }
        drift += [f"missing: {f}" for f in sorted(fresh_files - old_files)]
        drift += [f"stale: {f}" for f in sorted(old_files - fresh_files)]
        drift += [
            f"differs: {f}"
            for f in sorted(fresh_files & old_files)
            if not filecmp.cmp(fresh / f, checked_in / f, shallow=False)
        ]
    if drift:
        print("generated stubs drift from protos/ — run `make proto` and commit:\n  " + "\n  ".join(drift))
        return 1
    print("proto stubs up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
