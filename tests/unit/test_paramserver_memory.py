"""The parameter server's round in memory: identical θ everywhere, admission, the checkpoint, zero means zero.

Over gRPC with an in-process server where the wire matters (pulls, parameters, OpenJob's
optional fields), in the core otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from tendril.core import tensorstream
from tendril.core.channel import open_channel
from tendril.core.config import load_config
from tendril.core.errors import ErrorKind
from tendril.core.streaming import StreamInfo, chunk_ranges
from tendril.core.tensorstream import prepared_payload
from tendril.paramserver import core as core_module
from tendril.paramserver.core import SHARED_MODELS, ParameterServerCore
from tendril.paramserver.errors import ParameterServerError
from tendril.paramserver.rounds import RunConfig
from tendril.paramserver.service import ParameterServerService, build
from tendril.paramserver.spool import GATED_PIECE_BYTES, Handover, Spool
from tendril_diloco.feedback import ErrorFeedback, default_on
from tendril_diloco.params import apply_update, compute_delta, load_params, save_params
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc
from tendril_proto.tensor.v1 import tensor_pb2
from tests.unit.test_aggregator_core import CHUNK, _open, _push, _update, _write

# Sizes that are not multiples of the int8 block (256) nor of the server's 64 Ki-value blocks.
SHAPES = {"h.0.w": (300, 257), "h.0.b": (257,), "ln.g": (70_001,)}
WORKERS = ("w0", "w1", "w2")
CODEC_PROTO = {
    "fp32": tensor_pb2.CODEC_FP32,
    "bf16": tensor_pb2.CODEC_BF16,
    "int8": tensor_pb2.CODEC_INT8,
    "int4": tensor_pb2.CODEC_INT4,
    "sparse": tensor_pb2.CODEC_SPARSE,
}


async def _service(tmp_path: Path, **overrides: object) -> ParameterServerService:
    """An in-process ParameterServer on ports of its own (never the default data port another may hold)."""
    config = load_config(
        None,
        env={},
        overrides={
            "worker.state_dir": str(tmp_path / "state"),
            "paramserver.listen": "127.0.0.1:0",
            "paramserver.data_listen": "127.0.0.1:0",
            **overrides,
        },
    )
    service = build(config)
    await service.start()
    return service


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ParameterServerService]:
    service = await _service(tmp_path)
    try:
        yield service
    finally:
        await service.stop()


def _digest(params: dict[str, torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for name in sorted(params):
        sha.update(name.encode())
        sha.update(params[name].contiguous().numpy().tobytes())
    return sha.hexdigest()


@pytest.mark.parametrize("codec", ["int8", "int4", "sparse", "bf16", "fp32"])
async def test_every_worker_holds_the_servers_theta_after_every_round(
    server: ParameterServerService, tmp_path: Path, codec: str
) -> None:
    """5 rounds, 3 workers: each applies the pulled update as the DiLoCo executor does (and sends
    with the executor's error feedback where the codec has it by default); the hashes of every
    worker's θ and of the server's θ (PullParameters) are equal after every round."""
    rng = np.random.default_rng(7)
    theta0 = tmp_path / "theta0.safetensors"
    save_file({n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}, str(theta0))
    async with open_channel(server.address, peer_id="tester") as channel:
        stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
        await stub.OpenJob(
            paramserver_pb2.OpenJobRequest(
                run_id="same", expected_workers=len(WORKERS), quorum=len(WORKERS), rounds=5, codec=CODEC_PROTO[codec]
            )
        )
        await tensorstream.push_parameters(channel, theta0, run_id="same", worker_id="w0")
        theta = dict.fromkeys(WORKERS, load_params(theta0))
        ef = {w: ErrorFeedback(codec) for w in WORKERS} if default_on(codec) else {}
        for round in range(5):
            for i, worker in enumerate(WORKERS):  # "training": θ moves a little, differently per worker
                local = {
                    n: v + torch.randn(v.shape, generator=torch.Generator().manual_seed(round * 10 + i)) * 1e-2
                    for n, v in theta[worker].items()
                }
                delta = tmp_path / f"delta-{worker}.safetensors"
                sent = compute_delta(theta[worker], local)
                if worker in ef:
                    sent = ef[worker].compensate(sent)
                save_params(sent, delta)
                await tensorstream.push_update(
                    channel, delta, run_id="same", round=round, worker_id=worker, weight=1.0 + i, codec=codec
                )
                if worker in ef:
                    ef[worker].sent(sent)
            for worker in WORKERS:
                update = tmp_path / f"update-{worker}.safetensors"
                await tensorstream.pull_update(
                    channel, run_id="same", round=round, dest=update, codec=codec, worker_id=worker
                )
                theta[worker] = apply_update(theta[worker], load_params(update))
            pulled = tmp_path / "theta-ps.safetensors"
            assert await tensorstream.pull_parameters(channel, run_id="same", dest=pulled) == round + 1
            expected = _digest(load_params(pulled))
            assert {w: _digest(t) for w, t in theta.items()} == dict.fromkeys(WORKERS, expected), f"round {round}"


async def test_outer_momentum_zero_is_plain_sgd_and_unset_is_the_default(server: ParameterServerService) -> None:
    async with open_channel(server.address, peer_id="tester") as channel:
        stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
        await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id="sgd", expected_workers=1, outer_momentum=0.0))
        await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id="lr0", expected_workers=1, outer_lr=0.0))
        await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id="plain", expected_workers=1))
    configs = {run: server.core.runs[run].state.config for run in ("sgd", "lr0", "plain")}
    assert (configs["sgd"].outer_lr, configs["sgd"].outer_momentum) == (0.7, 0.0)
    assert (configs["lr0"].outer_lr, configs["lr0"].outer_momentum) == (0.0, 0.9)
    assert (configs["plain"].outer_lr, configs["plain"].outer_momentum) == (0.7, 0.9)


async def test_outer_momentum_zero_steps_as_torch_sgd_without_momentum(tmp_path: Path) -> None:
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=1, quorum=1, outer_momentum=0.0, outer_lr=0.5)
    param = torch.nn.Parameter(torch.from_numpy(load_params(tmp_path / "theta0.st")["w"].numpy().copy()))
    optimizer = torch.optim.SGD([param], lr=0.5, momentum=0.0)
    for round in range(3):
        delta = _write(tmp_path / f"d{round}.st", 40 + round, 1e-2)
        await _push(core, delta, run="run", round=round, worker="a", weight=2.0)
        served = await core.update_payload("run", round, "", timeout=10.0)
        param.grad = load_params(delta)["w"]  # one worker: g = (2 Δ) / 2 = Δ
        optimizer.step()
        theta = load_params((await core.parameters_payload("run")).path)  # type: ignore[arg-type]
        assert served.contributors == 1
        ours, torchs = theta["w"].numpy(), param.detach().numpy()
        assert np.all(np.abs(ours - torchs) <= np.spacing(np.maximum(np.abs(ours), np.abs(torchs))))  # θ + u
        with torch.no_grad():
            param.copy_(theta["w"])
    await core.stop()


async def _begin(core: ParameterServerCore, path: Path, *, run: str, worker: str) -> Spool:
    with prepared_payload(path, "fp32") as payload:
        info = StreamInfo(uuid.uuid4().hex, run, 0, worker, 1.0, payload.layout, payload.digest)
        return await core.begin_push(info)


async def _feed(spool: Spool, data: bytes, chunks: int | None = None) -> None:
    for i, (offset, length) in enumerate(chunk_ranges(len(data), spool.received, CHUNK)):
        if chunks is not None and i == chunks:
            return
        await spool.write(offset, data[offset : offset + length])


async def test_the_default_budget_is_the_accumulator_and_two_models(tmp_path: Path) -> None:
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=3, quorum=3)
    theta = core.runs["run"].theta_layout
    assert theta is not None and core.budget.limit == (1 + SHARED_MODELS) * theta.total_bytes == 3 * theta.total_bytes
    await core.stop()


async def test_pushes_wait_at_their_header_for_room_in_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for one fp32 push (the accumulator + one model), one push is staged at a time; the
    next is admitted once the first arrived whole (it is folded meanwhile), and their memory goes back."""
    monkeypatch.setattr(core_module, "SHARED_MODELS", 1)
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=3, quorum=3)
    theta = core.runs["run"].theta_layout
    assert theta is not None and core.budget.limit == 2 * theta.total_bytes
    deltas = {w: _write(tmp_path / f"{w}.st", i + 1, 1e-2) for i, w in enumerate(WORKERS)}
    first = await _begin(core, deltas["w0"], run="run", worker="w0")
    await _feed(first, deltas["w0"].read_bytes(), chunks=2)
    second = asyncio.create_task(_begin(core, deltas["w1"], run="run", worker="w1"))
    await asyncio.sleep(0.1)
    assert not second.done()  # waiting at its header: the server has not accepted it
    await _feed(first, deltas["w0"].read_bytes())
    committing = asyncio.create_task(core.commit_push(first))
    spool = await asyncio.wait_for(second, 10.0)  # admitted once the first was received whole
    assert await committing == 1
    assert core.budget.staging == spool.nbytes and core.budget.finishing == 0
    await _feed(spool, deltas["w1"].read_bytes())
    assert await core.commit_push(spool) == 2
    # Given back at once (no garbage collection needed): only the round's sum is held.
    assert core.budget.staging == 0 and core.budget.held == 4 * theta.numel
    await core.stop()


def _held_back(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Hold every push's last check (before its fold) until the event is set."""
    hold = threading.Event()
    real = core_module.bad_indices

    def held(*args: object) -> str | None:
        assert hold.wait(10.0)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(core_module, "bad_indices", held)
    return hold


async def _reference_update(tmp_path: Path, deltas: list[Path]) -> bytes:
    """The round's update with the same pushes in the same order, each staged in a buffer of its own."""
    core = ParameterServerCore(tmp_path / "reference", memory_budget=1 << 30)
    await _open(core, tmp_path, "run", expected_workers=len(deltas), quorum=len(deltas))
    for i, delta in enumerate(deltas):
        await _push(core, delta, run="run", round=0, worker=f"w{i}")
    update = await _update(core, "run", 0)
    await core.stop()
    return update


async def test_a_push_admitted_while_another_is_folded_is_received_into_its_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget is full (the accumulator + one model): the next push takes the buffer of the push
    being committed, and its bytes land only where that push's fold has added them to the sum."""
    monkeypatch.setattr(core_module, "SHARED_MODELS", 1)
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=2, quorum=2)
    hold = _held_back(monkeypatch)
    limit = core.budget.limit
    deltas = [_write(tmp_path / f"w{i}.st", i + 1, 1e-2) for i in range(2)]
    first = await _begin(core, deltas[0], run="run", worker="w0")
    data = deltas[0].read_bytes()
    await _feed(first, data)
    committing = asyncio.create_task(core.commit_push(first))
    held = core.budget.held
    second = await asyncio.wait_for(_begin(core, deltas[1], run="run", worker="w1"), 10.0)
    assert first.successor is not None and second.gate is first.successor
    assert core.budget.held == held  # no buffer of its own
    feeding = asyncio.create_task(_feed(second, deltas[1].read_bytes()))
    await asyncio.sleep(0.2)
    # Held back: the first push is not folded yet, its bytes are whole.
    assert not feeding.done() and second.received == 0
    assert bytes(first.payload()) == data
    hold.set()
    assert await asyncio.wait_for(committing, 10.0) == 1
    await asyncio.wait_for(feeding, 10.0)
    assert await core.commit_push(second) == 2
    assert await _update(core, "run", 0) == await _reference_update(tmp_path, deltas)
    assert core.budget.peak <= limit and core.budget.staging == 0 and core.budget.finishing == 0
    await core.stop()


async def test_a_handed_on_buffer_is_taken_in_pieces_as_the_fold_frees_it() -> None:
    mib = 1024 * 1024
    gate = Handover()
    assert gate.room(0, 16 * mib) == GATED_PIECE_BYTES == mib  # nothing free: a small piece to wait for
    waiting = asyncio.create_task(gate.wait(mib))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    gate.free(2 * mib, 5 * mib)  # (the fold's second thread: beyond the prefix)
    gate.free(0, 2 * mib)
    await asyncio.wait_for(waiting, 1.0)
    assert gate.room(0, 16 * mib) == 5 * mib and gate.room(4 * mib, 16 * mib) == mib
    assert gate.room(mib, 2 * mib) == 2 * mib
    gate.free_all()
    assert gate.room(5 * mib, 16 * mib) == 16 * mib
    await asyncio.wait_for(gate.wait(64 * mib), 1.0)


async def test_a_push_whose_buffer_was_handed_on_is_dropped_when_its_commit_is_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its call was cancelled before its fold began: it cannot wait for a retry (another push is
    received into its buffer), so it is dropped, and the retry starts again from 0."""
    monkeypatch.setattr(core_module, "SHARED_MODELS", 1)
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=2, quorum=2)
    hold = _held_back(monkeypatch)
    deltas = [_write(tmp_path / f"w{i}.st", i + 1, 1e-2) for i in range(2)]
    first = await _begin(core, deltas[0], run="run", worker="w0")
    await _feed(first, deltas[0].read_bytes())
    committing = asyncio.create_task(core.commit_push(first))
    second = await asyncio.wait_for(_begin(core, deltas[1], run="run", worker="w1"), 10.0)
    assert second.gate is not None
    feeding = asyncio.create_task(_feed(second, deltas[1].read_bytes()))
    await asyncio.sleep(0.1)
    committing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await committing
    await asyncio.wait_for(feeding, 10.0)  # the buffer is all the second push's now
    assert first.info.stream_id not in core.runs["run"].pushes
    hold.set()
    assert await core.commit_push(second) == 1
    assert await _push(core, deltas[0], run="run", round=0, worker="w0") == 2
    assert await _update(core, "run", 0) == await _reference_update(tmp_path, [deltas[1], deltas[0]])
    await core.stop()


async def _round_updates(service: ParameterServerService, tmp_path: Path, *, together: bool) -> list[bytes]:
    """Two rounds of three 4 MiB pushes over the data port (all at once, or one after another);
    each round's update as pulled."""
    shape = (1024, 1024)
    rng = np.random.default_rng(3)
    tag = "together" if together else "one-by-one"
    theta0 = tmp_path / f"{tag}-theta0.st"
    save_file({"w": rng.standard_normal(shape).astype(np.float32)}, str(theta0))
    deltas = []
    for i in range(3):
        # (small multiples of 2^-10: sums are exact in any order, so the commit order cannot show)
        values = rng.integers(-64, 64, shape).astype(np.float32) / np.float32(1024)
        deltas.append(tmp_path / f"{tag}-delta-{i}.st")
        save_file({"w": values}, str(deltas[-1]))
    updates = []
    async with open_channel(service.address, peer_id="tester") as channel:
        stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
        await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id="r", expected_workers=3, quorum=3, rounds=2))
        await tensorstream.push_parameters(channel, theta0, run_id="r", worker_id="w0")
        for round in range(2):
            pushes = [
                tensorstream.push_update(
                    channel, d, run_id="r", round=round, worker_id=f"w{i}", weight=1.0, codec="fp32"
                )
                for i, d in enumerate(deltas)
            ]
            if together:
                await asyncio.gather(*pushes)
            else:
                for push in pushes:
                    await push
            for i in range(3):  # (every worker pulls: an update is kept until its workers have it)
                out = tmp_path / f"{tag}-update-{round}-w{i}.st"
                await tensorstream.pull_update(
                    channel, run_id="r", round=round, dest=out, codec="fp32", worker_id=f"w{i}"
                )
            updates.append(out.read_bytes())
    return updates


async def test_pushes_at_once_over_the_data_port_with_room_for_one_are_received_behind_each_others_fold(
    tmp_path: Path,
) -> None:
    """A budget with room for the accumulator and one push: three pushes sent at once over the data
    port each take the buffer of the one before as it is folded, and the next round's, sent right
    after the pulls, find the last round's accumulator and update let go of once its checkpoint is
    written; the budget never holds more than its limit, and the updates are those of the same
    pushes sent one by one with room to spare."""
    tight = await _service(tmp_path / "tight", **{"paramserver.memory_budget_mib": 9})
    try:
        got = await asyncio.wait_for(_round_updates(tight, tmp_path, together=True), 60.0)
        budget = tight.core.budget
        assert budget.limit == 9 * 1024 * 1024 and 0 < budget.peak <= budget.limit
    finally:
        await tight.stop()
    roomy = await _service(tmp_path / "roomy", **{"paramserver.memory_budget_mib": 256})
    try:
        assert got == await asyncio.wait_for(_round_updates(roomy, tmp_path, together=False), 60.0)
    finally:
        await roomy.stop()


async def test_a_cut_push_keeps_its_bytes_until_their_room_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core_module, "SHARED_MODELS", 1)  # room for one fp32 push
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=3, quorum=3)
    deltas = {w: _write(tmp_path / f"{w}.st", i + 1, 1e-2) for i, w in enumerate(WORKERS)}
    assert await _push(core, deltas["w0"], run="run", round=0, worker="w0", cut_after=2, stream_id="s0") is None
    assert core.runs["run"].pushes["s0"].received == 2 * CHUNK  # resumable...
    await _push(core, deltas["w1"], run="run", round=0, worker="w1")  # ...until w1 needs the room
    assert "s0" not in core.runs["run"].pushes and core.budget.staging == 0
    # w0's retry starts again from 0 (the servicer answers received_bytes 0) and commits.
    assert await _push(core, deltas["w0"], run="run", round=0, worker="w0", stream_id="s0") == 2
    await core.stop()


async def test_the_update_is_served_before_the_checkpoint_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """θ and momentum reach the disk after the update is served; PullParameters waits for them."""
    gate = threading.Event()
    real = core_module.write_checkpoint

    def slow(*args: object, **kwargs: object) -> str:
        assert gate.wait(10.0)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(core_module, "write_checkpoint", slow)
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=1, quorum=1, rounds=2)
    run_dir = tmp_path / "ps" / "run"
    await _push(core, _write(tmp_path / "a.st", 1, 1e-2), run="run", round=0, worker="a")
    served = await asyncio.wait_for(core.update_payload("run", 0, "", timeout=10.0), 5.0)
    assert served.view is not None and served.contributors == 1
    assert not (run_dir / "theta-1.safetensors").exists()  # not on disk yet
    parameters = asyncio.create_task(core.parameters_payload("run"))
    await asyncio.sleep(0.05)
    assert not parameters.done()
    gate.set()
    theta = await asyncio.wait_for(parameters, 10.0)
    assert theta.round == 1 and theta.path == run_dir / "theta-1.safetensors"
    # What a round leaves on disk: θ, the momentum buffer, the state, a record per commit.
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "momentum-1.safetensors",
        "rounds",
        "state.json",
        "theta-1.safetensors",
    ]
    assert core.budget.checkpointing == 0 and core.budget.staging == 0
    assert core.budget.held == served.layout.total_bytes  # only the kept update is left in memory
    await core.stop()


async def test_a_failed_checkpoint_is_reported_and_retried_by_open_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = core_module.write_checkpoint
    calls: list[int] = []

    def broken_once(*args: object, **kwargs: object) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(core_module, "write_checkpoint", broken_once)
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=1, quorum=1)
    await _push(core, _write(tmp_path / "a.st", 1, 1e-2), run="run", round=0, worker="a")
    update = await core.update_payload("run", 0, "", timeout=10.0)  # served all the same
    with pytest.raises(ParameterServerError) as failed:
        await core.parameters_payload("run")  # θ on disk is a round behind: not served
    assert failed.value.kind is ErrorKind.INTERNAL and failed.value.reason == "AGGREGATION_FAILED"
    assert "disk full" in failed.value.message and core.runs["run"].state.round == 0
    with pytest.raises(ParameterServerError):
        await _push(core, _write(tmp_path / "b.st", 2, 1e-2), run="run", round=1, worker="a")
    assert await core.open_job("run", core.runs["run"].state.config) == (1, False)  # saved now
    theta = await core.parameters_payload("run")
    assert theta.round == 1 and core.runs["run"].state.round == 1
    assert bytes(update.view or b"")  # the served update stays pullable
    await core.stop()


async def test_a_new_run_is_seen_only_once_its_state_is_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While OpenJob's first save is on its way to the disk the run is not open (a server that
    died then never showed it OPEN); a second OpenJob of it meanwhile waits and makes no second
    run; a save that fails leaves no run behind."""
    saving, release = threading.Event(), threading.Event()
    real = core_module.RunStore.save

    def slow(store: core_module.RunStore, state: core_module.SavedState) -> None:
        saving.set()
        assert release.wait(10)
        real(store, state)

    monkeypatch.setattr(core_module.RunStore, "save", slow)
    core = ParameterServerCore(tmp_path / "ps")
    config = RunConfig.build(expected_workers=1)
    first = asyncio.create_task(core.open_job("run", config))
    second = asyncio.create_task(core.open_job("run", config))
    assert await asyncio.to_thread(saving.wait, 10)
    with pytest.raises(ParameterServerError) as early:
        core.get_round("run")
    assert early.value.kind is ErrorKind.NOT_FOUND and "run" not in core.runs
    assert not (tmp_path / "ps" / "run" / "state.json").exists()
    release.set()
    assert await first == (0, False) and await second == (0, False)
    assert core.get_round("run").round == 0 and (tmp_path / "ps" / "run" / "state.json").exists()
    monkeypatch.setattr(core_module.RunStore, "save", lambda store, state: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        await core.open_job("other", config)
    assert "other" not in core.runs
    with pytest.raises(ParameterServerError):
        core.get_round("other")
    await core.stop()


async def test_open_job_config_zero_values_survive_a_restart(tmp_path: Path) -> None:
    core = ParameterServerCore(tmp_path / "ps")
    await core.open_job("run", RunConfig.build(expected_workers=1, outer_momentum=0.0))
    await core.stop()
    again = ParameterServerCore(tmp_path / "ps")
    await again.load_saved()
    assert again.runs["run"].state.config.outer_momentum == 0.0
    await again.stop()


async def test_a_transport_may_receive_straight_into_the_staging_buffer(tmp_path: Path) -> None:
    """view() + landed(): bytes received in place are hashed and counted once, never copied; the
    result is the one write() gives."""
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "in-place", expected_workers=1, quorum=1)
    await _open(core, tmp_path, "copied", expected_workers=1, quorum=1)
    delta = _write(tmp_path / "d.st", 3, 1e-2)
    data = delta.read_bytes()
    spool = await _begin(core, delta, run="in-place", worker="w0")
    assert spool.view(CHUNK, 10) is None  # only where the received bytes end
    for offset, length in chunk_ranges(len(data), 0, CHUNK):
        place = spool.view(offset, length)
        assert place is not None and not place.readonly
        place[:] = data[offset : offset + length]  # what sock.recv_into(place) does
        spool.landed(offset, length)
    assert spool.received == len(data) and spool.view(len(data), 1) is None
    del place  # (a view held keeps the push's memory counted until it is let go)
    assert await core.commit_push(spool) == 1
    in_place = bytes((await core.update_payload("in-place", 0, "", timeout=10.0)).view or b"")
    copied = await _begin(core, delta, run="copied", worker="w0")
    await _feed(copied, data)
    assert await core.commit_push(copied) == 1
    assert in_place == bytes((await core.update_payload("copied", 0, "", timeout=10.0)).view or b"")
    await core.stop()


async def test_a_close_that_spoiled_the_sum_loses_the_commits_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outer step failed half way (the sum is half overwritten): the round's commits are lost,
    their workers are told PUSH_LOST after OpenJob and push again."""
    real = core_module.close_round

    def broken_once(**kwargs: object) -> None:
        monkeypatch.setattr(core_module, "close_round", real)
        kwargs["acc"].spoiled = True  # type: ignore[attr-defined]
        raise MemoryError("half way")

    monkeypatch.setattr(core_module, "close_round", broken_once)
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=2, quorum=2)
    deltas = {w: _write(tmp_path / f"{w}.st", i + 1, 1e-2) for i, w in enumerate(WORKERS[:2])}
    for worker in WORKERS[:2]:
        await _push(core, deltas[worker], run="run", round=0, worker=worker)
    with pytest.raises(ParameterServerError) as failed:
        await core.update_payload("run", 0, "", timeout=10.0)
    assert failed.value.reason == "AGGREGATION_FAILED" and "w0, w1" in failed.value.message
    await core.open_job("run", core.runs["run"].state.config)
    assert core.get_round("run").committed == []
    with pytest.raises(ParameterServerError) as lost:
        await core.update_payload("run", 0, "", timeout=10.0, worker_id="w1")
    assert lost.value.reason == "PUSH_LOST"
    for worker in WORKERS[:2]:
        await _push(core, deltas[worker], run="run", round=0, worker=worker)
    assert (await core.update_payload("run", 0, "", timeout=10.0, worker_id="w1")).contributors == 2
    await core.stop()
