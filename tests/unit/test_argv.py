"""Executor argv templates: placeholders substituted in place, unknown ones refused, no re-expansion."""

from __future__ import annotations

import pytest

from tendril.core.errors import ErrorKind
from tendril.job.argv import render_argv
from tendril.job.errors import JobError

VALUES = {
    "SOCKET_PATH": "/w/job-1/bridge.sock",
    "WORK_DIR": "/w/job-1",
    "JOB_JSON": "/w/job-1/job.json",
    "PYTHON": "/usr/bin/python3",
}


def test_every_placeholder_is_substituted_inside_arguments() -> None:
    argv = render_argv(
        ["{PYTHON}", "-m", "x", "--socket", "{SOCKET_PATH}", "--out={WORK_DIR}/out", "{JOB_JSON}"], VALUES
    )
    assert argv == [
        "/usr/bin/python3",
        "-m",
        "x",
        "--socket",
        "/w/job-1/bridge.sock",
        "--out=/w/job-1/out",
        "/w/job-1/job.json",
    ]


def test_other_braces_stay_literal() -> None:
    assert render_argv(["prog", '{"a": 1}', "{lower}", "{}"], VALUES) == ["prog", '{"a": 1}', "{lower}", "{}"]


def test_unknown_placeholder_is_refused_with_the_known_list() -> None:
    with pytest.raises(JobError) as err:
        render_argv(["prog", "{SOCKET}"], VALUES)
    assert err.value.kind is ErrorKind.FAILED_PRECONDITION
    assert err.value.reason == "BAD_EXECUTOR_COMMAND"
    assert "{SOCKET}" in err.value.message and "{SOCKET_PATH}" in err.value.message


def test_empty_command_is_refused() -> None:
    with pytest.raises(JobError) as err:
        render_argv([], VALUES)
    assert err.value.kind is ErrorKind.FAILED_PRECONDITION


def test_substituted_values_are_not_expanded_again() -> None:
    values = {**VALUES, "WORK_DIR": "/tmp/{JOB_JSON}"}
    assert render_argv(["{WORK_DIR}"], values) == ["/tmp/{JOB_JSON}"]


def test_no_shell_interpretation() -> None:
    assert render_argv(["echo", "$HOME; rm -rf {WORK_DIR}"], VALUES) == ["echo", "$HOME; rm -rf /w/job-1"]
