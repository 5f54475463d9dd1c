"""The scheduler's run state (no network): offers, sync-point directives, rounds, losses; job.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tendril.core.errors import ConfigError
from tendril.scheduler.errors import SchedulerError
from tendril.scheduler.jobconfig import load_job_config, parse_job_config
from tendril.scheduler.metrics import WorkerRound, round_line, run_stats
from tendril.scheduler.run import (
    Dataset,
    Directive,
    Endpoints,
    OfferIn,
    Progress,
    ProgressIn,
    Role,
    Run,
)
from tendril.scheduler.servicer import CoordinationServicer
from tendril.scheduler.slices import SliceRef
from tendril_proto.scheduler.v1 import scheduler_pb2

EP = Endpoints("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _run(workers: int = 2, rounds: int = 2, inner_steps: int = 4) -> tuple[Run, list[dict[str, Any]], _Clock]:
    config = parse_job_config(
        {"allocation": {"workers": workers}, "training": {"rounds": rounds, "inner_steps": inner_steps}}
    )
    lines: list[dict[str, Any]] = []
    clock = _Clock()
    run = Run(config, "run", on_round=lines.append, clock=clock)
    slices = tuple(SliceRef(f"slice-{i:05d}.safetensors", 10, "0" * 64, 4) for i in range(4))
    run.set_dataset(Dataset("ds", "127.0.0.1:9", slices, 16, 257))
    return run, lines, clock


def _trainers(run: Run, n: int) -> list[str]:
    run.register_request("req-t", Role.TRAIN)
    jobs = []
    for i in range(n):
        member, reason = run.consider_offer(OfferIn("req-t", f"w{i}", f"lease-{i}", EP))
        assert member is not None, reason
        run.add_trainer(member)
        jobs.append(member.job_id)
    return jobs


def _batch(run: Run, job: str, worker: str, rnd: int, seconds: float, loss: float = 2.0) -> Any:
    return run.progress(ProgressIn(job, worker, Progress.BATCH, rnd, 8, seconds, {"loss": loss}))


def _finish_round(run: Run, job: str, worker: str, rnd: int, loss: float, samples: int) -> Any:
    run.progress(ProgressIn(job, worker, Progress.UPDATE_SENT, rnd))
    metrics = {
        "loss": loss,
        "samples": samples,
        "bytes_sent": 1000,
        "send_seconds": 0.5,
        "compute_seconds": 2.0,
        "data_wait_seconds": 0.1,
        "train_seconds": 2.5,
    }
    run.progress(ProgressIn(job, worker, Progress.METRICS, rnd, metrics=metrics))
    received = {"bytes_received": 2000, "receive_seconds": 1.0, "contributors": 2}
    return run.progress(ProgressIn(job, worker, Progress.UPDATE_RECEIVED, rnd, metrics=received))


def test_offers_accept_what_is_needed_and_reject_the_rest_explicitly() -> None:
    run, _, _ = _run(workers=2)
    assert run.consider_offer(OfferIn("nope", "w0", "l0", EP)) == (
        None,
        "request 'nope' is not one of this scheduler's requests",
    )
    run.register_request("rt", Role.TRAIN)
    run.register_request("rp", Role.PARAMETER_SERVER)
    a, _ = run.consider_offer(OfferIn("rt", "w0", "l0", EP))
    dup, why = run.consider_offer(OfferIn("rt", "w0", "l1", EP))
    assert a is not None and dup is None and "already holds" in why
    b, _ = run.consider_offer(OfferIn("rt", "w1", "l2", EP))
    extra, why = run.consider_offer(OfferIn("rt", "w2", "l3", EP))
    assert b is not None and extra is None and "every train lease" in why
    # The parameter server may share a worker with a trainer (two leases).
    ps, _ = run.consider_offer(OfferIn("rp", "w0", "l4", EP))
    assert ps is not None and run.parameter_server is ps and ps.job_id != a.job_id
    assert run.needs(Role.TRAIN) == 0 and run.needs(Role.PARAMETER_SERVER) == 0
    run.lose("l2", "lease expired")
    assert run.needs(Role.TRAIN) == 1
    again, _ = run.consider_offer(OfferIn("rt", "w2", "l5", EP))
    assert again is not None
    run.lose("l4", "gone")
    assert "parameter server on w0 was lost" in run.failed
    late, why = run.consider_offer(OfferIn("rt", "w3", "l6", EP))
    assert late is None and "over" in why


def _train_until_sync(
    run: Run, clock: _Clock, speeds: dict[str, tuple[str, float]], rnd: int, first: list[Directive] | None = None
) -> dict[str, tuple[int, float]]:
    """Let jobs report batches at their speeds until each is told to sync: job -> (batches, finish time).

    ``first`` collects the directives of the first three reports.
    """
    start = clock.t
    next_at = {job: seconds for job, (_, seconds) in speeds.items()}
    count = dict.fromkeys(speeds, 0)
    done: dict[str, tuple[int, float]] = {}
    while len(done) < len(speeds):
        job = min((j for j in speeds if j not in done), key=lambda j: next_at[j])
        worker, seconds = speeds[job]
        clock.t = start + next_at[job]
        d = _batch(run, job, worker, rnd, seconds)
        if first is not None and len(first) < 3:
            first.append(d.directive)
        count[job] += 1
        assert d.directive in (Directive.CONTINUE, Directive.SCHEDULE_UPDATE)
        if d.directive is Directive.SCHEDULE_UPDATE and d.batches_until_update == 0:
            done[job] = (count[job], next_at[job])
        next_at[job] += seconds
    return done


def test_sync_points_follow_batch_times_and_rounds_close() -> None:
    run, lines, clock = _run(workers=2, rounds=2, inner_steps=10)
    fast, slow = _trainers(run, 2)
    speeds = {fast: ("w0", 0.1), slow: ("w1", 0.2)}
    first: list[Directive] = []
    plan = _train_until_sync(run, clock, speeds, 0, first)
    # The first reports carry no plan: the scheduler times each job's batches as they arrive.
    assert first == [Directive.CONTINUE] * 3
    # Budget = H × median batch time = 10 × 0.15 s: the fast job runs twice the batches of the slow one
    # and both send their update within one batch of each other.
    (n_fast, t_fast), (n_slow, t_slow) = plan[fast], plan[slow]
    assert n_fast > n_slow * 1.5 and abs(t_fast - t_slow) <= 0.2 + 1e-9, plan
    clock.t += 5
    slow_done = clock.t
    assert _finish_round(run, slow, "w1", 0, loss=3.0, samples=24).directive is Directive.CONTINUE
    assert not lines  # the fast worker has not received the update yet
    clock.t += 0.5
    d = _finish_round(run, fast, "w0", 0, loss=2.0, samples=72)
    assert (d.directive, d.round) == (Directive.CONTINUE, 1)
    (line,) = lines
    assert line["round"] == 0 and line["workers"] == ["w0", "w1"]
    assert line["loss_mean"] == pytest.approx((3.0 * 24 + 2.0 * 72) / 96)  # weighted by samples
    assert line["loss"] == {"w0": 2.0, "w1": 3.0} and line["samples"] == 96
    assert line["bytes_up"] == 2000 and line["bytes_down"] == 4000 and line["contributors"] == 2
    assert line["communication_seconds"] == pytest.approx(3.0)
    assert line["compute_seconds"] == pytest.approx(4.0) and line["train_seconds"] == pytest.approx(5.0)
    # Scheduler clock: both began at 100 (first report − its step time), w1 arrived and had its
    # update at slow_done, w0 half a second later.
    assert line["arrival_seconds"] == {"w0": pytest.approx(slow_done + 0.5 - 100), "w1": pytest.approx(slow_done - 100)}
    assert line["sync_wait_seconds"] == pytest.approx(0.5)
    assert line["wall_seconds"] == pytest.approx(slow_done + 0.5 - 100)
    assert line["cycle_seconds"] == pytest.approx(2 * (slow_done - 100) + 0.5)
    assert line["planned_seconds"] == pytest.approx(1.5)
    stats = run_stats([line])
    assert stats["stall_fraction"] == pytest.approx(0.2 / 5.0)
    # Utilization is step time / the workers' round time on the scheduler's clock (it was step
    # time / (train + send + receive seconds), which counted the send twice).
    assert stats["compute_utilization"] == pytest.approx(4.0 / line["cycle_seconds"])
    assert stats["sync_wait_fraction"] == pytest.approx(0.5 / line["wall_seconds"])
    # Round 1 is planned at its first batch from the timings already known. Its sync point is the
    # median (of two: the mean) of when each job will have run H = 10 batches: w1 began at
    # slow_done and reports its first batch at +0.5 s (9 × 0.2 s to go: +2.3 s); w0 began at +0.5 s
    # (10 × 0.1 s to go: +1.5 s). The sync point is +1.9 s: 1.4 s left = 7 more batches for w1.
    assert clock.t == pytest.approx(slow_done + 0.5)
    d = _batch(run, slow, "w1", 1, 0.2)
    assert d.directive is Directive.SCHEDULE_UPDATE and d.batches_until_update == 7
    clock.t += 0.1  # w0's first batch: it now ends 9 × 0.1 s later (+1.5 s), the sync point stays
    d = _batch(run, fast, "w0", 1, 0.1)
    assert d.directive is Directive.SCHEDULE_UPDATE and d.batches_until_update == 13  # 1.3 s left / 0.1 s
    assert _finish_round(run, slow, "w1", 1, 2.5, 24).directive is Directive.DONE
    assert _finish_round(run, fast, "w0", 1, 1.5, 48).directive is Directive.DONE
    assert run.finished and [x["round"] for x in lines] == [0, 1]
    assert _batch(run, fast, "w0", 1, 0.1).directive is Directive.DONE
    assert run.trainers_finished()


def test_a_lost_or_late_worker_does_not_hold_a_round_open() -> None:
    run, lines, _ = _run(workers=3, rounds=3, inner_steps=2)
    a, b, c = _trainers(run, 3)
    for job, worker in ((a, "w0"), (b, "w1"), (c, "w2")):
        _batch(run, job, worker, 0, 0.1)
    _finish_round(run, a, "w0", 0, 2.0, 8)
    run.lose("lease-1", "lease expired")  # b is gone mid-round
    assert not lines  # c is still in round 0
    # c's update came too late: it fetched θ again and carries on in round 1.
    _batch(run, c, "w2", 1, 0.1)
    (line,) = lines
    assert line["workers"] == ["w0"]
    with pytest.raises(SchedulerError) as err:
        _batch(run, b, "w1", 0, 0.1)
    assert err.value.reason == "UNKNOWN_JOB"


def test_a_job_that_keeps_failing_ends_the_run() -> None:
    run, _, _ = _run(workers=1)
    run.register_request("rt", Role.TRAIN)
    limit = run.config.allocation.max_lost
    for i in range(limit + 1):
        assert not run.failed
        member, _ = run.consider_offer(OfferIn("rt", f"w{i}", f"l{i}", EP))
        assert member is not None
        run.lose(member.lease_id, "the executor exited with code 1")
    assert f"{limit + 1} leases or jobs" in run.failed and "exited with code 1" in run.failed
    assert run.needs(Role.TRAIN) == 0


def test_slices_and_reports_are_checked() -> None:
    run, _, _ = _run()
    (job,) = _trainers(run, 1)
    assignment, dataset = run.assign_slice(job, "w0", [])
    assert assignment.slice in dataset.slices and dataset.data_node_address == "127.0.0.1:9"
    with pytest.raises(SchedulerError) as err:
        run.assign_slice(job, "someone-else", [])
    assert err.value.reason == "WRONG_WORKER"
    with pytest.raises(SchedulerError) as err:
        run.assign_slice("ghost", "w0", [])
    assert err.value.reason == "UNKNOWN_JOB"
    _batch(run, job, "w0", 1, 0.1)
    with pytest.raises(SchedulerError) as err:
        _batch(run, job, "w0", 0, 0.1)
    assert err.value.reason == "STALE_ROUND"


def test_job_toml_is_validated(tmp_path: Path) -> None:
    for data, key in [
        ({"training": {"codec": "fp8"}}, "training.codec"),
        ({"training": {"quorum": 3}}, "training.quorum"),
        ({"allocation": {"workers": 0}}, "allocation.workers"),
        ({"allocation": {"worker": {"cpu": -1}}}, "allocation.worker.cpu"),
        ({"training": {"inner": {"batch_size": "8"}}}, "training.inner.batch_size"),
        ({"training": {"colour": "red"}}, "training.colour"),
        ({"scheduler": {"listen": "nowhere"}}, "scheduler.listen"),
        ({"training": {"run_id": "a/b"}}, "training.run_id"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse_job_config(data)
        assert err.value.key == key and key in err.value.message
    config = parse_job_config({"training": {"model": {"config": {"n_layer": 4}}}})
    assert config.training.model.config == {"model_type": "gpt2", "n_layer": 4, "n_head": 2, "n_embd": 64}
    path = tmp_path / "job.toml"
    path.write_text('[training]\nrounds = 3\n[data]\nnode = ""\n')
    loaded = load_job_config(path, overrides={"training.rounds": "5", "training.codec": "int8", "scheduler.id": "s-1"})
    assert (loaded.training.rounds, loaded.training.codec, loaded.scheduler.id, loaded.data.node) == (
        5,
        "int8",
        "s-1",
        "",
    )
    with pytest.raises(ConfigError):
        load_job_config(tmp_path / "missing.toml")


def test_a_round_line_says_who_waited_for_whom() -> None:
    def worker(name: str, began: float, arrived: float, received: float, compute: float) -> WorkerRound:
        w = WorkerRound(name, compute_seconds=compute, train_seconds=arrived - began)
        w.started_at, w.arrived_at, w.received_at = began, arrived, received
        return w

    workers = [
        worker("a", 10.0, 14.0, 15.5, 3.5),  # done first: waits 1.0 s for c
        worker("b", 10.1, 14.6, 15.5, 4.0),
        worker("c", 10.1, 15.0, 15.6, 4.5),  # the slowest
    ]
    line = round_line(7, workers, started=10.0, closed=15.6, planned_seconds=4.8)
    assert line["arrival_seconds"] == {"a": pytest.approx(4.0), "b": pytest.approx(4.6), "c": pytest.approx(5.0)}
    assert line["sync_wait_seconds"] == pytest.approx(1.0) and line["wall_seconds"] == pytest.approx(5.6)
    assert line["waiting_seconds"] == pytest.approx(1.0 + 0.4 + 0.0)
    assert line["sync_seconds"] == pytest.approx(0.5 + 0.5 + 0.6)
    assert line["cycle_seconds"] == pytest.approx(5.5 + 5.4 + 5.5) and line["planned_seconds"] == 4.8
    stats = run_stats([line, {**line, "sync_wait_seconds": 0.112}, {**line, "sync_wait_seconds": 0.056}])
    assert stats["sync_wait_fraction"] == pytest.approx(0.112 / 5.6)  # the median round
    cycle = 3 * line["cycle_seconds"]
    assert stats["compute_utilization"] == pytest.approx(3 * 12.0 / cycle)
    assert stats["waiting_share"] == pytest.approx(3 * 1.4 / cycle)
    assert stats["sync_share"] == pytest.approx(3 * 1.6 / cycle)
    assert stats["other_share"] == pytest.approx(1 - 3 * (12.0 + 1.4 + 1.6) / cycle)
    with pytest.raises(ValueError, match="predate"):
        run_stats([{"round": 0, "train_seconds": 1.0, "wall_seconds": 1.0}])


def test_reports_of_several_batches_count_every_batch_and_meet_the_sync_point() -> None:
    """Jobs that report a few batches at a time (every batch once at most 2 are left, as the
    DiLoCo executor does) reach the sync point together, and the round's line counts every
    batch, sample, step second and loss they covered."""
    run, lines, clock = _run(workers=2, rounds=1, inner_steps=20)
    fast, slow = _trainers(run, 2)
    speeds = {fast: ("w0", 0.1, 4), slow: ("w1", 0.2, 3)}  # seconds a batch, batches a report
    start = clock.t
    next_at = {job: seconds for job, (_, seconds, _) in speeds.items()}
    ran = dict.fromkeys(speeds, 0)
    unreported = dict.fromkeys(speeds, 0)
    target: dict[str, int | None] = dict.fromkeys(speeds, None)
    reports = dict.fromkeys(speeds, 0)
    arrived: dict[str, float] = {}
    loss_sum = dict.fromkeys(speeds, 0.0)
    while len(arrived) < len(speeds):
        job = min((j for j in speeds if j not in arrived), key=lambda j: next_at[j])
        worker, seconds, group = speeds[job]
        clock.t = start + next_at[job]
        ran[job] += 1
        unreported[job] += 1
        left = None if target[job] is None else target[job] - ran[job]
        if ran[job] == 1 or unreported[job] >= group or (left is not None and left <= 2):
            n = unreported[job]
            event = ProgressIn(job, worker, Progress.BATCH, 0, 8 * n, seconds * n, {"loss": 2.0 + ran[job]}, batches=n)
            d = run.progress(event)
            unreported[job], reports[job] = 0, reports[job] + 1
            loss_sum[job] += (2.0 + ran[job]) * 8 * n
            if d.directive is Directive.SCHEDULE_UPDATE:
                target[job] = ran[job] + d.batches_until_update
        if target[job] is not None and ran[job] >= target[job]:
            arrived[job] = next_at[job]
            assert unreported[job] == 0  # the batches before the sync point were all reported
        next_at[job] += seconds
    # The sync point: the median (of two: the mean) of the H-th batches, 2 s and 4 s: 3 s.
    assert arrived[fast] == pytest.approx(3.0) and arrived[slow] == pytest.approx(3.0)
    assert ran == {fast: 30, slow: 15} and reports[fast] < 15 and reports[slow] < 10
    for job, worker in ((fast, "w0"), (slow, "w1")):
        run.progress(ProgressIn(job, worker, Progress.UPDATE_SENT, 0))
        run.progress(ProgressIn(job, worker, Progress.UPDATE_RECEIVED, 0))
    (line,) = lines
    assert line["batches"] == {"w0": 30, "w1": 15}
    assert line["samples_per_worker"] == {"w0": 240, "w1": 120}
    assert line["compute_seconds"] == pytest.approx(30 * 0.1 + 15 * 0.2)
    # Each report's loss weighs as many samples as it covered.
    assert line["loss"] == {"w0": pytest.approx(loss_sum[fast] / 240), "w1": pytest.approx(loss_sum[slow] / 120)}


async def test_the_coordination_servicer_reads_how_many_batches_a_report_covers() -> None:
    run, _, _ = _run(workers=1, rounds=1, inner_steps=10)
    (job,) = _trainers(run, 1)
    servicer = CoordinationServicer(run)

    def batch(batch_size: int, batches: int) -> scheduler_pb2.ReportProgressRequest:
        return scheduler_pb2.ReportProgressRequest(
            job_id=job,
            worker_id="w0",
            kind=scheduler_pb2.PROGRESS_KIND_BATCH,
            batch_size=batch_size,
            batch_seconds=0.1 * max(1, batches),
            batches=batches,
        )

    await servicer.ReportProgress(batch(8, 0), None)  # unset: one batch, as before the field
    await servicer.ReportProgress(batch(24, 3), None)
    with pytest.raises(SchedulerError) as err:
        await servicer.ReportProgress(batch(2, 3), None)  # 3 batches need at least 3 samples
    assert err.value.reason == "BAD_BATCH" and "batch_size >= 3" in str(err.value)
    run.progress(ProgressIn(job, "w0", Progress.UPDATE_SENT, 0))
    run.progress(ProgressIn(job, "w0", Progress.UPDATE_RECEIVED, 0))
    (line,) = run.completed_rounds
    assert line["batches"] == {"w0": 4} and line["samples"] == 32


@pytest.mark.parametrize("sync", ["overlapped", "streaming"])
def test_only_overlapped_sync_holds_the_sync_point_until_the_update_came(sync: str) -> None:
    config = parse_job_config({"allocation": {"workers": 2}, "training": {"rounds": 3, "inner_steps": 4, "sync": sync}})
    clock = _Clock()
    run = Run(config, "run", clock=clock)
    slices = tuple(SliceRef(f"slice-{i:05d}.safetensors", 10, "0" * 64, 4) for i in range(4))
    run.set_dataset(Dataset("ds", "127.0.0.1:9", slices, 16, 257))
    jobs = _trainers(run, 2)
    speeds = {job: (f"w{i}", 0.1) for i, job in enumerate(jobs)}
    _train_until_sync(run, clock, speeds, 0)
    for job, (worker, _) in speeds.items():
        run.progress(ProgressIn(job, worker, Progress.UPDATE_SENT, 0))
    # Round 1 trains while round 0's update travels; nobody has had it yet.
    answers = []
    for _ in range(8):
        clock.t += 0.1
        for job, (worker, seconds) in speeds.items():
            d = _batch(run, job, worker, 1, seconds)
            if job == jobs[0]:
                answers.append(d.batches_until_update)
    if sync == "overlapped":  # it goes on until the update came, then syncs at the plan's point
        assert min(answers) >= 2, answers
        run.progress(ProgressIn(jobs[0], "w0", Progress.UPDATE_RECEIVED, 0))
        clock.t += 0.1
        assert _batch(run, jobs[0], "w0", 1, 0.1).batches_until_update == 0
    else:  # streaming: the plan alone, H = 4 batches
        assert answers[3:] == [0] * 5, answers
