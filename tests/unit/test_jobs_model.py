"""Job ids and the job state machine."""

from __future__ import annotations

import pytest

from tendril.core.errors import ErrorKind
from tendril.data_fetcher.errors import FetcherError
from tendril.data_fetcher.fetcher import check_job_id
from tendril.job.errors import JobError
from tendril.job.model import TRANSITIONS, JobState, check_transition, validate_job_id


@pytest.mark.parametrize("good", ["a", "job-1", "A.b_c-9", "x" * 64, "..", "-"])
def test_valid_job_ids(good: str) -> None:
    validate_job_id(good)


@pytest.mark.parametrize("bad", ["", "x" * 65, "a/b", "a b", "é", "a\n", "job:1", "../x"])
def test_invalid_job_ids(bad: str) -> None:
    with pytest.raises(JobError) as err:
        validate_job_id(bad)
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT
    assert "1-64 characters" in err.value.message


@pytest.mark.parametrize("job_id", ["a", "x" * 64, "..", "-", "_a", ".hidden", "x" * 65, "x" * 128, "a/b", "é"])
def test_the_data_fetcher_takes_exactly_the_job_ids_the_job_service_takes(job_id: str) -> None:
    """A job's bridge opens the job at the DataFetcher under its JobService id: one rule for both."""
    try:
        validate_job_id(job_id)
        dispatched = True
    except JobError:
        dispatched = False
    try:
        check_job_id(job_id)
        fetched = True
    except FetcherError as err:
        assert err.reason == "BAD_JOB_ID" and "1-64 characters" in err.message
        fetched = False
    assert fetched == dispatched


LEGAL = {
    (JobState.PENDING, JobState.RUNNING),
    (JobState.PENDING, JobState.FAILED),
    (JobState.PENDING, JobState.CANCELLED),
    (JobState.RUNNING, JobState.SUCCEEDED),
    (JobState.RUNNING, JobState.FAILED),
    (JobState.RUNNING, JobState.CANCELLED),
}


@pytest.mark.parametrize("old", list(JobState))
@pytest.mark.parametrize("new", list(JobState))
def test_only_the_documented_transitions_are_legal(old: JobState, new: JobState) -> None:
    if (old, new) in LEGAL:
        check_transition("j", old, new)
    else:
        with pytest.raises(JobError) as err:
            check_transition("j", old, new)
        assert err.value.kind is ErrorKind.FAILED_PRECONDITION
        assert err.value.reason == "ILLEGAL_TRANSITION"


def test_terminal_states_have_no_way_out() -> None:
    for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
        assert state.terminal and not TRANSITIONS[state]
    assert not JobState.PENDING.terminal and not JobState.RUNNING.terminal
