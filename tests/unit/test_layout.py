"""The code obeys the map at the top of docs/ARCHITECTURE.md: every first-party import of a
package is one its row allows (the table is read from the doc, so the two cannot drift)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "docs" / "ARCHITECTURE.md"
FIRST_PARTY = (
    "tendril",
    "tendril_proto",
    "tendril_sdk",
    "tendril_kernels",
    "tendril_aggregate",
    "tendril_diloco",
    "tendril_example",
    "tendril_inference",
    "tendril_models",
    "bench",
    "tests",
)
ROW = re.compile(r"^\| `(?P<folder>[^`]+)/` \| `(?P<name>[a-z_.]+)`[^|]*\| [^|]* \| (?P<allowed>[^|]*) \|$")


def _rules() -> dict[Path, tuple[str, list[str] | None]]:
    """folder -> (import name, allowed import prefixes; None = anything)."""
    text = MAP.read_text()
    table = text[text.index("<!-- layout-map:begin -->") : text.index("<!-- layout-map:end -->")]
    rules: dict[Path, tuple[str, list[str] | None]] = {}
    for line in table.splitlines():
        if m := ROW.match(line):
            allowed = m["allowed"].strip()
            names = None if allowed == "anything" else re.findall(r"`([a-z_.]+)`", allowed)
            rules[ROOT / m["folder"]] = (m["name"], names)
    return rules


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return [(line, name) for line, name in found if name.split(".")[0] in FIRST_PARTY]


def _allows(prefixes: list[str], own: str, module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in [own, *prefixes])


def test_the_map_covers_every_package() -> None:
    rules = _rules()
    packages = [p.parent for p in (ROOT / "services" / "tendril").glob("*/__init__.py")]
    packages += [p.parent for p in (ROOT / "executors").glob("*/__init__.py")]
    packages += [ROOT / "clients" / "python" / "tendril_proto", ROOT / "kernels" / "tendril_kernels"]
    missing = [str(p.relative_to(ROOT)) for p in packages if p not in rules]
    assert not missing, f"packages without a row in the map of docs/ARCHITECTURE.md: {missing}"


def test_every_import_is_one_the_map_allows() -> None:
    broken: list[str] = []
    for folder, (own, allowed) in _rules().items():
        if allowed is None or not folder.is_dir():
            continue
        for path in folder.rglob("*.py"):
            for line, module in _imports(path):
                if not _allows(allowed, own, module):
                    broken.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({own} may import {allowed})")
    assert not broken, "imports the map of docs/ARCHITECTURE.md does not allow:\n" + "\n".join(broken)
