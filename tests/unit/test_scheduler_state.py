"""The scheduler's run state file (scheduler/state.py) and what a resumed run restores from it
(scheduler/resume.py without the network): members, rounds, slice cursor, config checks, a
damaged or foreign file, a run killed between two changes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tendril.core.errors import ConfigError
from tendril.scheduler.cli import main as scheduler_main
from tendril.scheduler.errors import SchedulerError, SchedulerRunReason
from tendril.scheduler.jobconfig import load_job_config, parse_job_config
from tendril.scheduler.resume import Recorder, open_state, recovered_line, saved_config
from tendril.scheduler.run import Dataset, Endpoints, OfferIn, Role, Run
from tendril.scheduler.slices import SliceAssigner, SliceRef
from tendril.scheduler.state import (
    SCHEMA_VERSION,
    STATE_FILE,
    RunStateStore,
    SavedAssignment,
    SavedMember,
    SliceCursor,
    StateError,
    config_differences,
)

EP = Endpoints("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
SLICES = tuple(SliceRef(f"slice-{i:05d}.safetensors", 10, "0" * 64, 4) for i in range(6))


def _member(lease: str, job: str, role: str = "train", worker: str = "w0") -> SavedMember:
    return SavedMember(lease, worker, role, job, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")


def test_a_new_file_has_the_schema_version_and_wal(tmp_path: Path) -> None:
    store = RunStateStore.open(tmp_path)
    store.close()
    with sqlite3.connect(tmp_path / STATE_FILE) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_everything_saved_is_read_back_after_reopening(tmp_path: Path) -> None:
    store = RunStateStore.open(tmp_path)
    assert store.saved_run() is None
    store.begin("r1", {"training": {"rounds": 4}})
    store.add_member(_member("l1", "r1-ps1", "parameter_server"))
    store.add_member(_member("l2", "r1-t2"))
    store.add_member(_member("l3", "r1-t12", worker="w1"))
    store.add_round({"round": 0, "loss_mean": 5.0})
    store.add_round({"round": 1, "loss_mean": 4.0})
    store.add_round({"round": 1, "loss_mean": 3.5})  # saved again: replaces, never twice
    store.add_assignment(SavedAssignment(0, "slice-00001.safetensors", "r1-t2", "w0", 0), 0)
    store.add_assignment(SavedAssignment(0, "slice-00004.safetensors", "r1-t12", "w1", 1), 1)
    store.close()

    store = RunStateStore.open(tmp_path)
    assert store.saved_run() == ("r1", {"training": {"rounds": 4}})
    assert [m.job_id for m in store.members()] == ["r1-ps1", "r1-t2", "r1-t12"]
    assert store.job_counter() == 12
    assert store.rounds() == [{"round": 0, "loss_mean": 5.0}, {"round": 1, "loss_mean": 3.5}]
    cursor = store.slice_cursor()
    used = frozenset({"slice-00001.safetensors", "slice-00004.safetensors"})
    assert cursor == SliceCursor(0, used, {"w0": 0, "w1": 1})
    store.end_members(["l1", "l2"])
    assert [m.lease_id for m in store.members()] == ["l3"]
    assert len(store.members(ended=True)) == 3
    assert store.finished() is None
    store.finish("/out/model.safetensors")
    assert store.finished() == "/out/model.safetensors"
    store.close()


def test_keep_rounds_forgets_later_rounds_and_their_slices_and_fills_gaps(tmp_path: Path) -> None:
    store = RunStateStore.open(tmp_path)
    store.begin("r", {})
    for r in range(3):
        store.add_round({"round": r})
        store.add_assignment(SavedAssignment(0, f"slice-{r}", "j", "w0", r), 0)
    store.keep_rounds(2, [])
    assert [line["round"] for line in store.rounds()] == [0, 1]
    assert store.slice_cursor().used == {"slice-0", "slice-1"}
    store.keep_rounds(4, [recovered_line(2), recovered_line(3)])
    lines = store.rounds()
    assert [line["round"] for line in lines] == [0, 1, 2, 3]
    assert lines[2]["recovered"] is True and lines[2]["workers"] == [] and lines[2]["loss_mean"] is None
    store.close()


def test_a_damaged_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_bytes(b"this is not sqlite, just bytes " * 200)
    with pytest.raises(StateError) as caught:
        RunStateStore.open(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "damaged" in message and "move it away" in message


def test_another_schema_version_is_refused(tmp_path: Path) -> None:
    RunStateStore.open(tmp_path).close()
    with sqlite3.connect(tmp_path / STATE_FILE) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StateError, match="schema version 99"):
        RunStateStore.open(tmp_path)


def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / STATE_FILE) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(StateError, match="not written by this scheduler"):
        RunStateStore.open(tmp_path)


def test_a_change_cut_short_leaves_the_last_whole_one(tmp_path: Path) -> None:
    """A process killed (SIGKILL) in the middle of the transaction of a change: the change is not there."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from tendril.scheduler.state import RunStateStore
        store = RunStateStore.open(Path({str(tmp_path)!r}))
        store.begin("r", {{}})
        store.add_round({{"round": 0}})
        db = store._db
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO rounds (round, line) VALUES (1, '{{}}')")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert done.returncode == -9
    store = RunStateStore.open(tmp_path)
    assert [line["round"] for line in store.rounds()] == [0]
    store.close()


def test_config_differences_name_the_keys_and_leave_out_operational_ones() -> None:
    a = {"scheduler": {"listen": "a:1", "id": "s"}, "training": {"rounds": 4, "inner": {"lr": 0.001}}}
    b = {"scheduler": {"listen": "a:2", "id": "s"}, "training": {"rounds": 6, "inner": {"lr": 0.002}, "new": 1}}
    assert config_differences(a, b) == [
        "training.inner.lr: 0.001 then, 0.002 now",
        'training.new: "(not set)" then, 1 now',
        "training.rounds: 4 then, 6 now",
    ]
    assert config_differences(a, a) == []


def _config(tmp_path: Path, **training: Any) -> Any:
    return parse_job_config({"scheduler": {"out_dir": str(tmp_path)}, "training": {"rounds": 4, **training}})


def test_open_state_new_saved_finished_and_changed(tmp_path: Path) -> None:
    start = open_state(_config(tmp_path), "run-1")
    assert (start.run_id, start.resumed, start.finished_model) == ("run-1", False, None)
    start.store.close()
    again = open_state(_config(tmp_path), "run-2")  # a new generated id: the saved one wins
    assert (again.run_id, again.resumed, again.finished_model) == ("run-1", True, None)
    again.store.finish("m")
    again.store.close()
    done = open_state(_config(tmp_path), "run-3")
    assert done.finished_model == "m"
    done.store.close()
    with pytest.raises(ConfigError) as caught:
        open_state(_config(tmp_path, rounds=6), "run-4")
    assert "training.rounds: 4 then, 6 now" in caught.value.message
    assert STATE_FILE in caught.value.message and "tendril scheduler resume" in caught.value.message


def test_saved_config_is_the_one_the_run_began_with(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="holds no scheduler state"):
        saved_config(tmp_path)
    open_state(_config(tmp_path, seed=7), "r").store.close()
    moved = tmp_path / "moved"
    moved.mkdir()
    (tmp_path / STATE_FILE).rename(moved / STATE_FILE)
    config = saved_config(moved)
    assert config.training.seed == 7 and config.scheduler.out_dir == str(moved)


def test_slice_assigner_restores_its_epoch_and_prefers_the_saved_slot() -> None:
    first = SliceAssigner(SLICES, 2, seed=0)
    first.join("a")
    first.join("b")
    handed = [first.assign("a").slice.name, first.assign("b").slice.name, first.assign("b").slice.name]
    again = SliceAssigner(SLICES, 2, seed=0)
    again.restore(0, handed)
    assert again.join("b2", prefer=1) == 1 and again.join("a2", prefer=0) == 0
    rest = [again.assign("a2").slice.name for _ in range(3)]
    assert set(rest) == {s.name for s in SLICES} - set(handed)  # the epoch ends without a slice twice
    assert again.assign("a2").epoch == 1


def test_a_restored_run_continues_rounds_jobs_slices_and_pins_the_parameter_server(tmp_path: Path) -> None:
    store = RunStateStore.open(tmp_path)
    store.begin("run", {})
    recorder = Recorder(store)
    config = parse_job_config({"allocation": {"workers": 2}, "training": {"rounds": 4}})
    run = Run(config, "run", on_round=recorder.on_round, on_assign=recorder.on_assign)
    run.set_dataset(Dataset("ds", "127.0.0.1:9", SLICES, 16, 257))
    run.register_request("req-t", Role.TRAIN)
    for i in range(2):
        member, _ = run.consider_offer(OfferIn("req-t", f"w{i}", f"lease-{i}", EP))
        assert member is not None
        recorder.on_accept(member)
        run.add_trainer(member)
    used = [run.assign_slice(f"run-t{i + 1}", f"w{i}", ())[0].slice.name for i in (0, 1, 1)]
    recorder.on_round({"round": 0})
    store.close()

    store = RunStateStore.open(tmp_path)
    assert store.slice_cursor().used == set(used) and store.slice_cursor().slots == {"w0": 0, "w1": 1}
    again = Run(config, "run")
    again.restore(store.rounds(), job_counter=store.job_counter(), cursor=store.slice_cursor(), ps_worker="w1")
    again.set_dataset(Dataset("ds", "127.0.0.1:9", SLICES, 16, 257))
    assert [line["round"] for line in again.completed_rounds] == [0] and not again.finished
    again.register_request("req-t", Role.TRAIN)
    again.register_request("req-p", Role.PARAMETER_SERVER)
    member, _ = again.consider_offer(OfferIn("req-t", "w1", "lease-9", EP))
    assert member is not None and member.job_id == "run-t3"  # numbering goes on: no job id is used twice
    again.add_trainer(member)
    refused, reason = again.consider_offer(OfferIn("req-p", "w0", "lease-10", EP))
    assert refused is None and "must be on w1" in reason
    ps, _ = again.consider_offer(OfferIn("req-p", "w1", "lease-11", EP))
    assert ps is not None
    later = {again.assign_slice("run-t3", "w1", ())[0].slice.name for _ in range(3)}
    assert later == {s.name for s in SLICES} - set(used)
    store.close()


def test_the_commands_say_one_line_for_a_damaged_or_missing_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert scheduler_main(["resume", str(tmp_path)]) == 2
    assert "holds no scheduler state" in capsys.readouterr().err
    (tmp_path / STATE_FILE).write_bytes(b"garbage " * 1000)
    assert scheduler_main(["resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged" in err, err
    job = tmp_path / "job.toml"
    job.write_text(f'[scheduler]\nout_dir = "{tmp_path}"\n')
    assert scheduler_main(["run", "--config", str(job)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged" in err, err


def test_run_reports_a_finished_run_and_refuses_another_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "job.toml"
    job.write_text(f'[scheduler]\nout_dir = "{tmp_path}"\n[training]\nrounds = 3\n')
    start = open_state(load_job_config(job), "r-1")
    for r in range(3):
        start.store.add_round({"round": r})
    start.store.finish(str(tmp_path / "model.safetensors"))
    start.store.close()
    assert scheduler_main(["run", "--config", str(job)]) == 0
    assert capsys.readouterr().out.startswith("run r-1 already finished: 3 rounds")
    assert scheduler_main(["resume", str(tmp_path)]) == 0
    assert "already finished" in capsys.readouterr().out
    assert scheduler_main(["run", "--config", str(job), "--set", "training.inner.lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert "training.inner.lr: 0.001 then, 0.5 now" in err and "tendril scheduler resume" in err


def test_placement_keys_may_change_on_resume() -> None:
    a = {"allocation": {"bid": 100.0, "worker": {"cpu": 1.0}, "workers": 2}, "data": {"node": "a:1", "dataset_id": ""}}
    b = {"allocation": {"bid": 150.0, "worker": {"cpu": 2.0}, "workers": 3}, "data": {"node": "b:1", "dataset_id": ""}}
    assert config_differences(a, b) == ["allocation.workers: 2 then, 3 now"]


@pytest.mark.parametrize(
    ("closed", "rounds", "recovered", "forgotten"),
    [
        (2, [0, 1], (), ()),  # the usual case: the server closed what the file has
        (3, [0, 1, 2], (2,), ()),  # round 2 closed while no scheduler ran
        (1, [0], (), (1,)),  # the file has a round the server does not: trained again
        (None, [], (), ()),  # the server never opened the run: from round 0, anywhere
    ],
)
async def test_resume_takes_the_parameter_servers_round(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    closed: int | None,
    rounds: list[int],
    recovered: tuple[int, ...],
    forgotten: tuple[int, ...],
) -> None:
    import tendril.scheduler.resume as resume_module

    store = RunStateStore.open(tmp_path)
    store.begin("run", {})
    store.add_member(_member("l1", "run-ps1", "parameter_server", worker="w9"))
    store.add_member(_member("l2", "run-t2"))
    for r in (0, 1):
        store.add_round({"round": r, "loss_mean": 1.0})
        store.add_assignment(SavedAssignment(0, f"slice-0000{r}.safetensors", "run-t2", "w0", r), 0)
    stopped: list[str] = []

    async def fake_stop(channel: Any, store: RunStateStore) -> list[SavedMember]:
        members = store.members()
        stopped.extend(m.job_id for m in members)
        store.end_members([m.lease_id for m in members])
        return members

    async def fake_closed(channel: Any, run_id: str, total: int) -> int | None:
        return closed

    monkeypatch.setattr(resume_module, "stop_old_members", fake_stop)
    monkeypatch.setattr(resume_module, "closed_rounds", fake_closed)
    run = Run(parse_job_config({"training": {"rounds": 4}}), "run")
    if closed is None:  # a run the server does not know can only resume when no round finished
        store.keep_rounds(0, [])
    point = await resume_module.resume(lambda address: None, run, store)
    assert stopped == ["run-ps1", "run-t2"] and store.members() == []
    assert [line["round"] for line in run.completed_rounds] == rounds
    assert (point.round, point.recovered, point.forgotten) == ((closed or 0), recovered, forgotten)
    assert run.ps_worker == ("" if closed is None else "w9")
    assert all(line.get("recovered") for line in run.completed_rounds if line["round"] in recovered)
    assert store.slice_cursor().used == {f"slice-0000{r}.safetensors" for r in (0, 1) if r < (closed or 0)}
    assert point.describe("run").startswith(f"run run: resuming from round {closed or 0} of 4")
    store.close()


async def test_resume_refuses_a_run_its_parameter_server_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tendril.scheduler.resume as resume_module

    store = RunStateStore.open(tmp_path)
    store.begin("run", {})
    store.add_member(_member("l1", "run-ps1", "parameter_server", worker="w9"))
    store.add_round({"round": 0})

    async def fake_stop(channel: Any, store: RunStateStore) -> list[SavedMember]:
        return []

    async def fake_closed(channel: Any, run_id: str, total: int) -> int | None:
        return None

    monkeypatch.setattr(resume_module, "stop_old_members", fake_stop)
    monkeypatch.setattr(resume_module, "closed_rounds", fake_closed)
    run = Run(parse_job_config({"training": {"rounds": 4}}), "run")
    with pytest.raises(SchedulerError) as caught:
        await resume_module.resume(lambda address: None, run, store)
    assert caught.value.reason == SchedulerRunReason.NOT_RESUMABLE
    assert "no parameter server knows the run" in caught.value.message and STATE_FILE in caught.value.message
    store.close()
