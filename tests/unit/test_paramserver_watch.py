"""WatchRound: a run's round state now, then every change; the run's end ends it; a slow watcher
is cut off (ABORTED WATCH_OVERFLOW). In the core, then over gRPC with an in-process server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tendril.core.channel import open_channel
from tendril.core.config import load_config
from tendril.core.errors import ErrorKind
from tendril.core.fanout import SubscriptionOverflow
from tendril.paramserver import core as core_module
from tendril.paramserver.core import ParameterServerCore, RoundStatus, RunState
from tendril.paramserver.errors import ParameterServerError
from tendril.paramserver.rounds import RunConfig
from tendril.paramserver.service import ParameterServerService, build
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc
from tendril_sdk.errors import error_reason
from tests.unit.test_aggregator_core import _open, _push, _write

OPEN, FINISHED, CLOSED = RunState.OPEN, RunState.FINISHED, RunState.CLOSED


def _brief(status: RoundStatus) -> tuple[int, bool, tuple[str, ...], RunState]:
    return status.round, status.closed, status.committed, status.run_state


async def _collect(core: ParameterServerCore, run: str, into: list[RoundStatus]) -> None:
    async for status in core.watch_round(run):
        into.append(status)


async def _until(condition: object, what: str) -> None:
    for _ in range(500):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_the_state_now_then_every_change_until_the_run_finishes(tmp_path: Path) -> None:
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=2, quorum=2, round_timeout_seconds=0, rounds=2)
    seen: list[RoundStatus] = []
    watcher = asyncio.create_task(_collect(core, "run", seen))
    await _until(lambda: seen, "the first status")
    deltas = {w: _write(tmp_path / f"{w}.st", i + 1, 1e-2) for i, w in enumerate("ab")}
    for round in range(2):
        for worker in "ab":
            await _push(core, deltas[worker], run="run", round=round, worker=worker)
        await core.update_payload("run", round, "fp32", timeout=10.0)
    await asyncio.wait_for(watcher, 10.0)  # the stream ended by itself with the run's end
    assert [_brief(s) for s in seen] == [
        (0, False, (), OPEN),  # the state when the watch began
        (0, False, ("a",), OPEN),
        (0, False, ("a", "b"), OPEN),
        (0, True, ("a", "b"), OPEN),  # the round stops taking pushes, its update is computed
        (1, False, (), OPEN),
        (1, False, ("a",), OPEN),
        (1, False, ("a", "b"), OPEN),
        (1, True, ("a", "b"), OPEN),
        (1, True, (), FINISHED),  # the last update is saved: the run is over
    ]
    assert {(s.run_id, s.expected_workers, s.rounds) for s in seen} == {("run", 2, 2)}
    # A watch of a finished run is its state, then the end.
    assert [_brief(s) async for s in core.watch_round("run")] == [(1, True, (), FINISHED)]
    await core.stop()


@pytest.mark.parametrize("purge", [False, True])
async def test_close_ends_every_watch_with_closed(tmp_path: Path, purge: bool) -> None:
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", rounds=0)
    seen: list[RoundStatus] = []
    watchers = [asyncio.create_task(_collect(core, "run", seen)) for _ in range(2)]
    await _until(lambda: len(seen) == 2, "both watches")
    await core.close_job("run", purge=purge)
    await asyncio.wait_for(asyncio.gather(*watchers), 10.0)
    assert [s.run_state for s in seen] == [OPEN, OPEN, CLOSED, CLOSED]
    if not purge:
        assert [s.run_state async for s in core.watch_round("run")] == [CLOSED]
    else:
        with pytest.raises(ParameterServerError) as gone:
            await anext(core.watch_round("run"))
        assert gone.value.kind is ErrorKind.NOT_FOUND and gone.value.reason == "RUN_NOT_OPEN"
    await core.stop()


async def test_a_watcher_that_falls_behind_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "WATCH_QUEUE", 4)
    core = ParameterServerCore(tmp_path / "ps")
    await core.open_job("run", RunConfig.build(expected_workers=1))
    slow = core.watch_round("run")
    assert (await anext(slow)).run_state is OPEN
    fast = core.watch_round("run")
    await anext(fast)
    run = core.runs["run"]
    for _ in range(4):
        run.publish()
    assert len([await anext(fast) for _ in range(4)]) == 4  # a watcher that keeps up is not cut
    run.publish()  # the fifth change the slow one has not read
    with pytest.raises(SubscriptionOverflow):
        await anext(slow)
    assert len(run.watchers) == 1  # the slow watcher's queue is gone
    await fast.aclose()
    assert len(run.watchers) == 0
    await core.stop()


async def test_a_failed_round_close_ends_the_watch_with_the_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: object) -> object:
        raise OSError("disk full")

    monkeypatch.setattr(core_module, "close_round", broken)
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=1, quorum=1)
    statuses = core.watch_round("run")
    await anext(statuses)
    await _push(core, _write(tmp_path / "a.st", 1, 1e-2), run="run", round=0, worker="a")
    with pytest.raises(ParameterServerError) as failed:
        while True:
            await asyncio.wait_for(anext(statuses), 10.0)
    assert failed.value.kind is ErrorKind.INTERNAL and failed.value.reason == "AGGREGATION_FAILED"
    with pytest.raises(ParameterServerError):  # a new watch says so at once, until OpenJob resumes
        await anext(core.watch_round("run"))
    with pytest.raises(ParameterServerError) as missing:
        await anext(core.watch_round("nope"))
    assert missing.value.reason == "RUN_NOT_OPEN"
    await core.stop()


# -- over gRPC ------------------------------------------------------------------------------------


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ParameterServerService]:
    config = load_config(
        None,
        env={},
        overrides={
            "worker.state_dir": str(tmp_path / "state"),
            "paramserver.listen": "127.0.0.1:0",
            "paramserver.data_listen": "127.0.0.1:0",
        },
    )
    service = build(config)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def test_watch_round_over_grpc(server: ParameterServerService, tmp_path: Path) -> None:
    async with open_channel(server.address, peer_id="tester") as channel:
        stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
        await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id="r1", expected_workers=2, quorum=1, rounds=3))
        call = stub.WatchRound(paramserver_pb2.WatchRoundRequest(run_id="r1"))
        first = (await call.read()).status
        assert (first.run_id, first.round, first.state, first.run_state) == (
            "r1",
            0,
            paramserver_pb2.ROUND_STATE_OPEN,
            paramserver_pb2.RUN_STATE_OPEN,
        )
        assert (first.expected_workers, first.rounds, list(first.committed_workers)) == (2, 3, [])
        await stub.CloseJob(paramserver_pb2.CloseJobRequest(run_id="r1"))
        last = (await call.read()).status
        assert last.run_state == paramserver_pb2.RUN_STATE_CLOSED
        assert await call.read() == grpc.aio.EOF  # CLOSED ends the stream
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await anext(aiter(stub.WatchRound(paramserver_pb2.WatchRoundRequest(run_id="nope"))))
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        assert error_reason(missing.value) == "RUN_NOT_OPEN"
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await anext(aiter(stub.WatchRound(paramserver_pb2.WatchRoundRequest(run_id="../x"))))
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT and error_reason(bad.value) == "BAD_RUN_ID"


async def test_an_overflowing_watch_ends_aborted_watch_overflow(
    server: ParameterServerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core_module, "WATCH_QUEUE", 2)
    async with open_channel(server.address, peer_id="tester") as channel:
        stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
        await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id="r1", expected_workers=1))
        call = stub.WatchRound(paramserver_pb2.WatchRoundRequest(run_id="r1"))
        await call.read()
        run = server.core.runs["r1"]
        for _ in range(5):  # in one go: the server's relay cannot drain the queue in between
            run.publish()
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            while True:
                await call.read()
        assert cut.value.code() is grpc.StatusCode.ABORTED
        assert error_reason(cut.value) == "WATCH_OVERFLOW" and "watch again" in (cut.value.details() or "")


async def test_the_deprecated_job_id_is_still_read(server: ParameterServerService) -> None:
    async with open_channel(server.address, peer_id="old-client") as channel:
        stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
        reply = await stub.OpenJob(paramserver_pb2.OpenJobRequest(job_id="legacy", expected_workers=1))
        assert reply.round == 0
        view = await stub.GetRound(paramserver_pb2.GetRoundRequest(job_id="legacy"))
        assert view.run_id == "legacy" and view.job_id == "legacy"  # answered under both names
        # run_id wins when both are set.
        await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id="new", job_id="legacy", expected_workers=1))
        assert "new" in server.core.runs
        await stub.CloseJob(paramserver_pb2.CloseJobRequest(job_id="legacy"))
        assert server.core.runs["legacy"].state.closed
