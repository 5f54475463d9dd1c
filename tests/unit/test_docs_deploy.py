"""deploy/: the systemd units and the container file run real commands with real flags and keys.

Neither systemd nor a container engine runs in CI, so this checks what can drift from the code
by reading: every command line parses with the `tendril` CLI, every TENDRIL_* variable is a
config key's, the exposed ports are the defaults, and every unit keeps its sandbox.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tendril.cli.config_template import config_keys, env_var
from tendril.cli.main import build_parser
from tendril.core.config import WorkerConfig, split_address

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = ("tendril-worker", "tendril-gateway", "tendril-datanode", "tendril-scheduler")
SANDBOX = (
    "User=tendril",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "CapabilityBoundingSet=",
    "Restart=on-failure",
    "RestartPreventExitStatus=2",
)
# Variables the units and the container set that are not config keys.
OTHER_ENV = {"TENDRIL_GATEWAY", "TENDRIL_ADVERTISE"}


def _unit(name: str) -> dict[str, list[str]]:
    """key -> values of a unit file (continuation lines joined)."""
    text = (DEPLOY / f"{name}.service").read_text().replace("\\\n", " ")
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value.strip())
    return out


def _parses(argv: list[str]) -> None:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"`tendril {shlex.join(argv)}` does not parse") from exc
    assert callable(getattr(args, "func", None)), f"`tendril {shlex.join(argv)}` names no command"


@pytest.mark.parametrize("name", UNITS)
def test_unit_is_sandboxed_and_runs_a_real_command(name: str) -> None:
    unit = _unit(name)
    lines = {f"{k}={v}" for k, values in unit.items() for v in values}
    missing = [s for s in SANDBOX if s not in lines]
    assert not missing, f"{name}.service lacks {missing}"
    assert unit.get("StateDirectory") or unit.get("ReadWritePaths") or unit.get("RuntimeDirectory")
    (exec_start,) = unit["ExecStart"]
    argv = shlex.split(re.sub(r"\$\{(\w+)\}", "value", exec_start))
    assert argv[0] == "/opt/tendril/.venv/bin/tendril"
    _parses(argv[1:])
    keys = {env_var(k) for k in config_keys()}
    for value in unit.get("Environment", []):
        var = value.partition("=")[0]
        assert not var.startswith("TENDRIL_") or var in keys | OTHER_ENV, f"{name}: {var} is no config key"


def test_worker_unit_stops_through_the_supervisor() -> None:
    unit = _unit("tendril-worker")
    assert unit["KillMode"] == ["mixed"] and unit["KillSignal"] == ["SIGTERM"]
    stop = float(unit["TimeoutStopSec"][0])
    assert stop > WorkerConfig().supervisor.stop_timeout_seconds


def _containerfile() -> str:
    return (DEPLOY / "Containerfile").read_text().replace("\\\n", " ")


def test_container_sets_real_keys_and_exposes_the_default_ports() -> None:
    text = _containerfile()
    keys = {env_var(k) for k in config_keys()}
    variables = set(re.findall(r"\b(TENDRIL_[A-Z_]+)=", text))
    assert variables and variables <= keys, f"not config keys: {sorted(variables - keys)}"
    config = WorkerConfig()
    listens = [getattr(config, s).listen for s in WorkerConfig.SERVICE_SECTIONS]
    listens += [config.gateway.embedded_listen, config.telemetry.metrics_listen]
    (expose,) = re.findall(r"^EXPOSE (.+)$", text, re.MULTILINE)
    assert sorted(int(p) for p in expose.split()) == sorted(split_address(a)[1] for a in listens)
    for address in listens:
        port = split_address(address)[1]
        assert f"=0.0.0.0:{port}" in text, f"port {port} does not listen on every interface in the container"


def test_container_runs_as_a_user_and_checks_health_with_tendril_status() -> None:
    text = _containerfile()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    assert 'pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"' in text
    assert re.search(r"^ARG TORCH_VERSION=2\.13\.0$", text, re.MULTILINE)
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    (health,) = re.findall(r"^HEALTHCHECK .* CMD (\[.+\])$", text, re.MULTILINE)
    (entry,) = re.findall(r"^ENTRYPOINT (\[.+\])$", text, re.MULTILINE)
    (cmd,) = re.findall(r"^CMD (\[.+\])$", text, re.MULTILINE)
    health_argv = json.loads(health)
    assert health_argv[:2] == ["tendril", "status"]
    _parses(health_argv[1:])
    assert json.loads(entry) == ["tendril"]
    _parses(json.loads(cmd))
