"""The workers a run expects by name (SetExpectedWorkers) and the retention of runs that are over."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tendril.core.errors import ErrorKind
from tendril.paramserver.core import ParameterServerCore
from tendril.paramserver.errors import ParameterServerError
from tendril.paramserver.rounds import Phase, RoundMachine, RunConfig
from tests.unit.test_aggregator_core import _push, _write

LONG = 30.0  # a round timeout no test here may wait out
OWNER = "sched-1"


async def _open(core: ParameterServerCore, tmp_path: Path, run: str, **config: object) -> None:
    from tests.unit.test_aggregator_core import _open as open_with_theta

    values: dict[str, object] = {"expected_workers": 3, "quorum": 1, "round_timeout_seconds": LONG, "rounds": 4}
    values.update(config)
    await open_with_theta(core, tmp_path, run, **values)
    await core.open_job(run, RunConfig.build(**values), owner_id=OWNER)  # type: ignore[arg-type]


def test_the_machine_closes_when_every_named_worker_committed() -> None:
    config = RunConfig.build(expected_workers=3, quorum=3, round_timeout_seconds=10)
    machine = RoundMachine("r", config)
    machine.commit("a", 1.0, now=0.0)
    machine.commit("b", 1.0, now=0.0)
    assert not machine.close_due(1.0)  # 2 of 3 by count
    machine.expected = frozenset({"a", "b"})  # "c" was declared lost
    assert machine.close_due(1.0) and machine.expected_count == 2
    machine.expected = frozenset({"a", "c"})
    assert not machine.close_due(1.0)
    assert machine.phase is Phase.OPEN
    # The quorum (3) is at most the number named (2): after the timeout two commits close the round.
    machine.expected = frozenset({"a", "z"})
    assert not machine.close_due(5.0) and machine.close_due(10.5)
    machine.expected = frozenset()
    assert machine.expected_count == 3 and not machine.close_due(10.5)  # by count: quorum 3


async def test_a_lost_worker_is_no_longer_waited_for(tmp_path: Path) -> None:
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run")
    deltas = {w: _write(tmp_path / f"{w}.st", i + 1, 1e-2) for i, w in enumerate(["w1", "w2", "w3"])}
    status = await core.set_expected("run", OWNER, ["w3", "w1", "w2", "w1"])
    assert status.expected_names == ("w1", "w2", "w3") and status.expected_workers == 3
    await _push(core, deltas["w1"], run="run", round=0, worker="w1")
    await _push(core, deltas["w2"], run="run", round=0, worker="w2")
    assert core.get_round("run").round == 0  # w3 is still expected; the timeout is far away
    started = time.monotonic()
    status = await core.set_expected("run", OWNER, ["w1", "w2"])  # the scheduler lost w3
    await asyncio.wait_for(core.update_payload("run", 0, "fp32", timeout=5.0), 5.0)
    assert time.monotonic() - started < 2.0, "the round closed at once, not after its timeout"
    # Round 1 closes as soon as both named workers committed.
    await _push(core, deltas["w2"], run="run", round=1, worker="w2")
    await _push(core, deltas["w1"], run="run", round=1, worker="w1")
    assert (await core.update_payload("run", 1, "fp32", timeout=5.0)).contributors == 2
    # A worker that joins is added: round 2 waits for it.
    await core.set_expected("run", OWNER, ["w1", "w2", "w3"])
    await _push(core, deltas["w1"], run="run", round=2, worker="w1")
    await _push(core, deltas["w2"], run="run", round=2, worker="w2")
    await asyncio.sleep(0.2)
    assert core.get_round("run").round == 2 and core.get_round("run").known_workers == ["w1", "w2", "w3"]
    await _push(core, deltas["w3"], run="run", round=2, worker="w3")
    assert (await core.update_payload("run", 2, "fp32", timeout=5.0)).contributors == 3
    await core.stop()
    # The names are saved with the run: a restarted server (and a later OpenJob) keeps them.
    again = ParameterServerCore(tmp_path / "ps")
    await again.load_saved()
    assert again.runs["run"].status().expected_names == ("w1", "w2", "w3")
    await again.open_job("run", RunConfig.build(expected_workers=3, quorum=1, round_timeout_seconds=LONG, rounds=4))
    assert again.runs["run"].status().expected_names == ("w1", "w2", "w3")
    assert again.runs["run"].state.owner_id == OWNER  # an OpenJob without owner keeps it
    # An empty list goes back to the count.
    assert (await again.set_expected("run", OWNER, [])).expected_workers == 3
    await again.stop()


async def test_only_the_runs_owner_names_its_workers(tmp_path: Path) -> None:
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run")
    with pytest.raises(ParameterServerError) as other:
        await core.set_expected("run", "someone-else", ["w1"])
    assert other.value.kind is ErrorKind.PERMISSION_DENIED and other.value.reason == "NOT_RUN_OWNER"
    await core.open_job("ownerless", RunConfig.build(expected_workers=1))
    with pytest.raises(ParameterServerError) as ownerless:
        await core.set_expected("ownerless", OWNER, ["w1"])
    assert ownerless.value.reason == "NOT_RUN_OWNER" and "without an owner_id" in ownerless.value.message
    with pytest.raises(ParameterServerError) as missing:
        await core.set_expected("nope", OWNER, ["w1"])
    assert missing.value.kind is ErrorKind.NOT_FOUND
    await core.stop()


async def test_runs_over_for_longer_than_the_retention_are_purged(tmp_path: Path) -> None:
    root = tmp_path / "ps"
    core = ParameterServerCore(root)
    await _open(core, tmp_path, "old-closed")
    await _open(core, tmp_path, "new-closed")
    await _open(core, tmp_path, "old-open")
    await _open(core, tmp_path, "old-finished", expected_workers=1, rounds=1)
    await _push(core, _write(tmp_path / "d.st", 9, 1e-2), run="old-finished", round=0, worker="w1")
    await core.update_payload("old-finished", 0, "fp32", timeout=5.0)
    await core._settle(core.runs["old-finished"])
    await core.close_job("old-closed", purge=False)
    await core.close_job("new-closed", purge=False)
    week_ago = time.time() - 8 * 86400
    for run in ("old-closed", "old-open", "old-finished"):
        os.utime(root / run / "state.json", (week_ago, week_ago))
    assert sorted(await core.purge_expired(7 * 86400)) == ["old-closed", "old-finished"]
    assert sorted(p.name for p in root.iterdir()) == ["new-closed", "old-open"]
    assert sorted(core.runs) == ["new-closed", "old-open"]
    await core.stop()
