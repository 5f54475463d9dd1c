"""The `tendril` command: group registry, guarded optional groups, one-line errors with exit 2."""

from __future__ import annotations

import argparse
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from tendril.cli import main as cli


def test_required_groups_are_there() -> None:
    parser = cli.build_parser()
    text = parser.format_help()
    assert "worker" in text and "gateway" in text


def test_missing_optional_group_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "GROUPS", (*cli.GROUPS, ("ghost", "tendril.no_such_package.cli", False)))
    assert "ghost" not in cli.build_parser().format_help()


@pytest.mark.parametrize(
    ("source", "error"),
    [("import tendril_surely_missing_dependency\n", "tendril_surely_missing_dependency"), ("1 / 0\n", "division")],
)
def test_broken_optional_group_explains_itself_and_spares_the_others(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
    error: str,
) -> None:
    (tmp_path / "tendril_test_broken_group.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tendril_test_broken_group", raising=False)
    monkeypatch.setattr(cli, "GROUPS", (*cli.GROUPS, ("broken", "tendril_test_broken_group", False)))
    assert cli.run(["broken", "anything"]) == 2
    err = capsys.readouterr().err
    assert "could not be loaded" in err and error in err
    args = cli.build_parser().parse_args(["worker", "probe", "--json"])
    assert callable(args.func)


def test_an_optional_group_registers_its_own_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("tendril_test_group")
    seen: list[argparse.Namespace] = []

    def add_parser(subparsers: Any) -> None:
        group = subparsers.add_parser("extra")
        commands = group.add_subparsers()
        command = commands.add_parser("go")
        command.add_argument("--n", type=int, default=1)
        command.set_defaults(func=lambda args: seen.append(args))

    module.add_parser = add_parser  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tendril_test_group", module)
    monkeypatch.setattr(cli, "GROUPS", (*cli.GROUPS, ("extra", "tendril_test_group", False)))
    assert cli.run(["extra", "go", "--n", "3"]) == 0  # a None return counts as success
    assert seen[0].n == 3


def test_group_without_subcommand_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["worker"]) == 2
    assert "probe" in capsys.readouterr().err
    assert cli.run([]) == 2


def test_config_error_is_one_line_with_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tendril.cli", "worker", "run", "--set", "job.max_concurrent_jobs=lots"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "job.max_concurrent_jobs" in proc.stderr and "Traceback" not in proc.stderr
