"""docs/OPERATIONS.md cannot drift from the code: config keys, ports, status JSON, error messages."""

from __future__ import annotations

import re
from pathlib import Path

from tendril.cli.config_template import config_keys, env_var, markdown_table, toml_value
from tendril.cli.status_model import (
    Amount,
    CacheStats,
    Capacity,
    JobRow,
    LeaseRow,
    ServiceHealth,
    Snapshot,
    SupervisorInfo,
)
from tendril.core.config import WorkerConfig, split_address

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "OPERATIONS.md"
REGENERATE = (
    '.venv/bin/python -c "import pathlib; from tendril.cli.config_template import markdown_table as t; '
    "p = pathlib.Path('docs/OPERATIONS.md'); s = p.read_text(); "
    "b = s.index('\\n', s.index('<!-- config-table:begin')) + 1; "
    "e = s.index('<!-- config-table:end -->'); p.write_text(s[:b] + t() + s[e:])\""
)
PLACEHOLDER = re.compile(r"<[^<>]*>|\.\.\.|…")
# Implicit concatenation of string literals across lines: "...text " \n f"more..." reads as one.
CONTINUATION = re.compile(r"([\"'])\s*\n\s*[rbfRBF]{0,2}\1")


def _guide() -> str:
    return GUIDE.read_text()


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_config_table_is_the_generated_one() -> None:
    text = _guide()
    begin = text.index("<!-- config-table:begin")
    start = text.index("\n", begin) + 1
    end = text.index("<!-- config-table:end -->")
    assert text[start:end] == markdown_table(), f"regenerate the table in docs/OPERATIONS.md:\n{REGENERATE}"


def test_every_config_key_is_documented_with_its_default_and_env_var() -> None:
    reference = _section(_guide(), "Configuration reference")
    config = WorkerConfig()
    keys = config_keys()
    assert len(keys) >= 40
    for key in keys:
        section, _, name = key.partition(".")
        default = toml_value(getattr(getattr(config, section), name)).replace("|", "\\|")
        row = f"| `{key}` | `{default}` | `{env_var(key)}` |"
        assert row in reference, f"{key} (default {default}) is missing from the configuration reference"


def test_ports_table_matches_the_defaults() -> None:
    ports = _section(_guide(), "Ports")
    config = WorkerConfig()
    listens = {f"{s}.listen": getattr(config, s).listen for s in WorkerConfig.SERVICE_SECTIONS}
    listens["gateway.embedded_listen"] = config.gateway.embedded_listen
    listens["telemetry.metrics_listen"] = config.telemetry.metrics_listen
    for key, address in listens.items():
        _, port = split_address(address)
        row = next((line for line in ports.splitlines() if line.startswith(f"| {port} |")), None)
        assert row is not None and f"`{key}`" in row, f"ports table: {port} should name `{key}`"


def _snapshot() -> Snapshot:
    zero = Amount()
    return Snapshot(
        "w",
        "local",
        0.0,
        [ServiceHealth("lease", "a:1", "SERVING")],
        supervisor=SupervisorInfo(1, True, "serving", True, 0.0, 0.0, "/s"),
        leases=[LeaseRow("l", "o", "renewable", 1.0, zero, 1.0, "r")],
        jobs=[JobRow("j", "running", "a/b", "o", "l", 1.0, {}, None, "")],
        capacity=Capacity(zero, zero, zero),
        data_cache=CacheStats(0, 0, 0, 0, 0, 0.0, 0, 0, 0, 0),
    )


def test_status_json_keys_are_documented() -> None:
    section = _section(_guide(), "Watching a worker")
    data = _snapshot().to_json()
    for key in data:
        assert f"| `{key}` |" in section, f"`tendril status --json` key {key!r} is not documented"
    for key in data["services"][0]:
        assert f"| `services[].{key}` |" in section, f"services[].{key} is not documented"
    nested = {"supervisor": data["supervisor"], "leases": data["leases"][0], "jobs": data["jobs"][0]}
    nested |= {"data_cache": data["data_cache"], "resources": data["resources"]}
    for parent, value in nested.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| `{parent}` |"))
        for key in value:
            assert f"`{key}`" in row, f"{parent}.{key} is not documented"


def _source_text() -> str:
    files = [*(ROOT / "services").rglob("*.py"), *(ROOT / "executors").rglob("*.py")]
    return "\n".join(CONTINUATION.sub("", f.read_text()) for f in files)


def test_troubleshooting_messages_are_what_the_code_says() -> None:
    section = _section(_guide(), "Troubleshooting")
    source = _source_text()
    messages = [
        cell
        for line in section.splitlines()
        if line.startswith("| `")
        for cell in re.findall(r"`([^`]+)`", line.split(" | ")[0])
    ]
    assert len(messages) >= 30, f"only {len(messages)} messages in the troubleshooting tables"
    missing = []
    for message in messages:
        for fragment in PLACEHOLDER.split(message):
            fragment = fragment.strip()
            if len(fragment) >= 4 and fragment not in source:
                missing.append(f"{fragment!r} (of `{message}`)")
    assert not missing, "troubleshooting messages no longer in the code:\n" + "\n".join(missing)


def test_the_fragment_check_can_fail() -> None:
    source = CONTINUATION.sub("", 'x = (\n    f"lease {a} is still temporary: the worker "\n    "confirms it"\n)\n')
    assert "is still temporary: the worker confirms it" in source
    assert "the worker confirms nothing" not in source
