"""ParameterServerCore without gRPC: no trace of broken pushes, quorum timeout, resume, restart, memory."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tendril.core.errors import ErrorKind
from tendril.core.streaming import DEFAULT_DIGEST, SHA256, Digest, StreamInfo, chunk_ranges, mapped, new_hash
from tendril.core.tensorfile import Layout, convert_file, plan_layout, read_layout
from tendril.core.tensorstream import prepared_payload
from tendril.paramserver import core as core_module
from tendril.paramserver.core import ParameterServerCore
from tendril.paramserver.errors import ParameterServerError
from tendril.paramserver.rounds import RunConfig
from tendril.paramserver.spool import FiniteWatch, watchable

SHAPES = {"w": (128, 64), "b": (64,)}
CHUNK = 8192


def _write(path: Path, seed: int, scale: float = 1.0) -> Path:
    rng = np.random.default_rng(seed)
    save_file({n: (rng.standard_normal(s) * scale).astype(np.float32) for n, s in SHAPES.items()}, str(path))
    return path


async def _push(
    core: ParameterServerCore,
    path: Path,
    *,
    run: str,
    round: int,
    worker: str,
    weight: float = 1.0,
    codec: str = "fp32",
    cut_after: int | None = None,
    stream_id: str | None = None,
    damage: bool = False,
    chunk: int = CHUNK,
) -> int | None:
    """Push through the core as the servicer does; ``cut_after`` chunks, then break off."""
    with prepared_payload(path, codec) as payload:
        info = StreamInfo(stream_id or uuid.uuid4().hex, run, round, worker, weight, payload.layout, payload.digest)
        spool = await core.begin_push(info)
        try:
            with mapped(payload.path) as view:
                for i, (offset, length) in enumerate(chunk_ranges(len(view), spool.received, chunk)):
                    if cut_after is not None and i == cut_after:
                        return None
                    data = bytes(view[offset : offset + length])
                    if damage and i == 1:
                        data = bytes([data[0] ^ 0xFF]) + data[1:]
                    await spool.write(offset, data)
        finally:
            core.release(spool)
        return await core.commit_push(spool)


async def _open(core: ParameterServerCore, tmp_path: Path, run: str, **config: object) -> None:
    values: dict[str, object] = {"expected_workers": 3, "quorum": 2, "round_timeout_seconds": 0.3, "rounds": 3}
    values.update(config)
    await core.open_job(run, RunConfig.build(**values))  # type: ignore[arg-type]
    with prepared_payload(_write(tmp_path / "theta0.st", 0), "fp32") as payload:
        info = StreamInfo("p-" + run, run, 0, "w0", 0.0, payload.layout, payload.digest)
        spool = await core.begin_parameters(info)
        assert spool is not None
        with mapped(payload.path) as view:
            for offset, length in chunk_ranges(len(view), 0, CHUNK):
                await spool.write(offset, bytes(view[offset : offset + length]))
        assert await core.commit_parameters(spool) == (True, 0)


async def _update(core: ParameterServerCore, run: str, round: int) -> bytes:
    served = await core.update_payload(run, round, "fp32", timeout=10.0)
    assert served.view is not None  # served from memory
    return bytes(served.view)


@pytest.mark.parametrize("codec", ["fp32", "int4", "sparse"])
async def test_broken_and_damaged_pushes_leave_no_trace(tmp_path: Path, codec: str) -> None:
    core = ParameterServerCore(tmp_path / "ps")
    deltas = {w: _write(tmp_path / f"{w}.st", i + 1, 1e-2) for i, w in enumerate(["w1", "w2", "w3"])}
    await _open(core, tmp_path, "with-broken", codec=codec)
    await _open(core, tmp_path, "clean", expected_workers=2, codec=codec)
    # "with-broken": w3 breaks off half way, then sends damaged bytes; w1 and w2 commit.
    chunk = CHUNK if codec == "fp32" else 256  # int4 and sparse payloads are short: more, smaller chunks
    broken = {"run": "with-broken", "round": 0, "worker": "w3", "weight": 7, "codec": codec, "chunk": chunk}
    assert await _push(core, deltas["w3"], cut_after=3, **broken) is None  # type: ignore[arg-type]
    assert core.get_round("with-broken").pushes_in_flight == 1
    with pytest.raises(ParameterServerError) as damaged:
        await _push(core, deltas["w3"], damage=True, **broken)  # type: ignore[arg-type]
    assert damaged.value.kind is ErrorKind.DATA_LOSS and damaged.value.reason == "DIGEST_MISMATCH"  # xxh3-128 payloads
    await _push(core, deltas["w2"], run="with-broken", round=0, worker="w2", weight=2, codec=codec)
    await _push(core, deltas["w1"], run="with-broken", round=0, worker="w1", weight=1, codec=codec)
    # "clean": only w1 and w2, committed in the same order (the fold follows the commit order).
    await _push(core, deltas["w2"], run="clean", round=0, worker="w2", weight=2, codec=codec)
    await _push(core, deltas["w1"], run="clean", round=0, worker="w1", weight=1, codec=codec)
    broken_update = await _update(core, "with-broken", 0)  # closed by quorum after 0.3 s
    assert broken_update == await _update(core, "clean", 0)
    assert (await core.update_payload("with-broken", 0, "", timeout=1.0)).contributors == 2
    # Nothing of the broken push is held any more: no staged push, no staging memory.
    assert not core.runs["with-broken"].pushes and core.budget.staging == 0
    for run in ("with-broken", "clean"):  # and θ after the round is bit-identical too
        assert (await core.parameters_payload(run)).path.read_bytes() == (  # type: ignore[union-attr]
            await core.parameters_payload("clean")
        ).path.read_bytes()  # type: ignore[union-attr]
    # The late worker is told which round is open.
    with pytest.raises(ParameterServerError) as late:
        await _push(core, deltas["w3"], run="with-broken", round=0, worker="w3")
    assert late.value.kind is ErrorKind.FAILED_PRECONDITION and "round 1 is open" in late.value.message
    await core.stop()


async def test_cut_push_resumes_at_the_received_offset(tmp_path: Path) -> None:
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=1, quorum=1)
    delta = _write(tmp_path / "d.st", 5, 1e-2)
    sid = "stream-1"
    assert await _push(core, delta, run="run", round=0, worker="w1", cut_after=4, stream_id=sid) is None
    spool = core.runs["run"].pushes[sid]
    assert spool.received == 4 * CHUNK
    assert await _push(core, delta, run="run", round=0, worker="w1", stream_id=sid) == 1
    served = await core.update_payload("run", 0, "", timeout=10.0)
    assert served.contributors == 1 and served.round == 0
    with pytest.raises(ParameterServerError) as dup:
        await _push(core, delta, run="run", round=1, worker="w1", stream_id="other", weight=0)
    assert dup.value.reason == "BAD_WEIGHT"
    await core.stop()


async def test_bad_pushes_are_refused_up_front(tmp_path: Path) -> None:
    core = ParameterServerCore(tmp_path / "ps")
    delta = _write(tmp_path / "d.st", 5)
    with pytest.raises(ParameterServerError) as missing:
        await _push(core, delta, run="nope", round=0, worker="w")
    assert missing.value.kind is ErrorKind.NOT_FOUND and missing.value.reason == "RUN_NOT_OPEN"
    await core.open_job("bare", RunConfig.build(expected_workers=1))
    with pytest.raises(ParameterServerError) as no_theta:
        await _push(core, delta, run="bare", round=0, worker="w")
    assert no_theta.value.reason == "NO_PARAMETERS"
    await _open(core, tmp_path, "run")
    other = tmp_path / "other.st"
    save_file({"w": np.zeros((128, 63), dtype=np.float32), "x": np.zeros(1, dtype=np.float32)}, str(other))
    with pytest.raises(ParameterServerError) as mismatch:
        await _push(core, other, run="run", round=0, worker="w")
    assert mismatch.value.reason == "LAYOUT_MISMATCH"
    assert "missing b" in mismatch.value.message and "unknown x" in mismatch.value.message
    nan = tmp_path / "nan.st"
    save_file({"w": np.full((128, 64), np.nan, dtype=np.float32), "b": np.zeros(64, dtype=np.float32)}, str(nan))
    with pytest.raises(ParameterServerError) as non_finite:
        await _push(core, nan, run="run", round=0, worker="w")
    assert non_finite.value.reason == "NON_FINITE_UPDATE"
    assert core.get_round("run").committed == [] and core.get_round("run").pushes_in_flight == 0
    await core.stop()


@pytest.mark.parametrize("codec", ["fp32", "bf16"])
@pytest.mark.parametrize("chunk", [CHUNK, 4099, 1])
async def test_nan_and_inf_are_seen_as_the_push_arrives_wherever_the_chunks_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: str, chunk: int
) -> None:
    """A push is looked at for NaN/Inf while it is hashed (spool.FiniteWatch): a finite one is not
    read through again before its fold; one with NaN/Inf anywhere (the first value, the last, a value
    cut by a chunk's end) is refused and named, and counts for nothing."""
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=2, quorum=2)
    looked: list[str] = []
    real = core_module.first_non_finite

    def counted(view: memoryview, layout: Layout) -> str | None:
        looked.append(layout.codec)
        return real(view, layout)

    monkeypatch.setattr(core_module, "first_non_finite", counted)
    good = _write(tmp_path / "good.st", 7, 1e-2)
    assert await _push(core, good, run="run", round=0, worker="w0", codec=codec, chunk=chunk) == 1
    assert looked == []  # seen finite on the way
    values = {"w": np.full((128, 64), 1e-3, dtype=np.float32), "b": np.full(64, 1e-3, dtype=np.float32)}
    # "b" comes first in the payload: its first value, a value near a chunk's end, the last value of "w"
    for name, index, bad in (("b", 0, np.nan), ("w", (16, 1), np.inf), ("w", (127, 63), -np.inf)):
        spoiled = {k: v.copy() for k, v in values.items()}
        spoiled[name][index] = bad
        path = tmp_path / f"bad-{name}.st"
        save_file(spoiled, str(path))
        if codec != "fp32":  # (a sender refuses to encode NaN/Inf: the payload is made by hand)
            convert_file(path, path.with_suffix(f".{codec}"), codec, check_finite=False)
            path = path.with_suffix(f".{codec}")
        with pytest.raises(ParameterServerError) as refused:
            await _push(core, path, run="run", round=0, worker="w1", codec=codec, chunk=chunk)
        assert refused.value.reason == "NON_FINITE_UPDATE" and repr(name) in refused.value.message
    assert looked == [codec] * 3
    assert core.get_round("run").committed == ["w0"] and core.get_round("run").pushes_in_flight == 0
    await core.stop()


def test_the_watch_hashes_every_byte_and_looks_only_at_values() -> None:
    """Header bytes that read as NaN are not values; the digest is the payload's, however it is fed."""
    layout, header = plan_layout([("w", (1000,))], "fp32")
    assert watchable(layout) and not watchable(plan_layout([("w", (1000,))], "int8", 256)[0])
    header = header[:-1] + b"\xff"  # (padding: 0xff bytes are no value)
    data = header + np.arange(1000, dtype=np.float32).tobytes()
    for step in (1, 3, 4096, len(data)):
        watch = FiniteWatch(new_hash(DEFAULT_DIGEST), layout)
        for at in range(0, len(data), step):
            watch.update(data[at : at + step])
        reference = new_hash(DEFAULT_DIGEST)
        reference.update(data)
        assert watch.finite and watch.hexdigest() == reference.hexdigest()


async def test_parameters_that_are_not_floats_are_invalid_arguments(tmp_path: Path) -> None:
    """θ0 of integer tensors is refused as a bad header (what the wire's header check answers), never INTERNAL."""
    core = ParameterServerCore(tmp_path / "ps")
    await core.open_job("run", RunConfig.build(expected_workers=1))
    ints = tmp_path / "ints.st"
    save_file({"w": np.zeros((4, 4), dtype=np.int32)}, str(ints))
    info = StreamInfo("p-ints", "run", 0, "w0", 0.0, read_layout(ints), Digest(SHA256, "0" * 64))
    with pytest.raises(ParameterServerError) as bad:
        await core.begin_parameters(info)
    assert bad.value.kind is ErrorKind.INVALID_ARGUMENT and bad.value.reason == "BAD_HEADER"
    assert "floating tensors" in bad.value.message and "w (I32)" in bad.value.message
    await core.stop()


async def test_restart_resumes_round_state_and_commits(tmp_path: Path) -> None:
    root = tmp_path / "ps"
    core = ParameterServerCore(root)
    await _open(core, tmp_path, "run", expected_workers=2, quorum=2, round_timeout_seconds=0)
    deltas = [_write(tmp_path / f"d{i}.st", 20 + i, 1e-2) for i in range(4)]
    await _push(core, deltas[0], run="run", round=0, worker="a", weight=1)
    await _push(core, deltas[1], run="run", round=0, worker="b", weight=3, codec="int8")
    update0 = await _update(core, "run", 0)
    await _push(core, deltas[2], run="run", round=1, worker="a", weight=2)
    theta1 = (await core.parameters_payload("run")).path.read_bytes()
    await core.stop()

    restarted = ParameterServerCore(root)
    await restarted.load_saved()
    # The open round's pushes lived in memory: a's commit is gone, and a is told so.
    view = restarted.get_round("run")
    assert (view.round, view.committed, view.closed) == (1, [], False)
    assert view.known_workers == ["a"]
    assert await restarted.open_job("run", restarted.runs["run"].state.config) == (1, True)
    with pytest.raises(ParameterServerError) as gone:  # updates are not kept across a restart
        await _update(restarted, "run", 0)
    assert gone.value.kind is ErrorKind.FAILED_PRECONDITION and gone.value.reason == "UPDATE_GONE"
    assert update0  # (it was served before the restart)
    assert (await restarted.parameters_payload("run")).path.read_bytes() == theta1
    with pytest.raises(ParameterServerError) as lost:
        await restarted.update_payload("run", 1, "", timeout=10.0, worker_id="a")
    assert lost.value.kind is ErrorKind.FAILED_PRECONDITION and lost.value.reason == "PUSH_LOST"
    await _push(restarted, deltas[2], run="run", round=1, worker="a", weight=2)  # a pushes again
    with pytest.raises(ParameterServerError) as dup:
        await _push(restarted, deltas[2], run="run", round=1, worker="a")
    assert dup.value.kind is ErrorKind.ALREADY_EXISTS
    await _push(restarted, deltas[3], run="run", round=1, worker="b", weight=1)
    served = await restarted.update_payload("run", 1, "bf16", timeout=10.0)
    assert served.contributors == 2 and served.layout.codec == "bf16"
    await restarted.close_job("run", purge=False)
    assert (await restarted.parameters_payload("run")).round == 2  # still served after CloseJob
    await restarted.close_job("run", purge=True)
    assert not (root / "run").exists()
    await restarted.stop()


async def test_pull_waits_for_the_round_and_times_out(tmp_path: Path) -> None:
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=2, quorum=2)
    with pytest.raises(ParameterServerError) as timeout:
        await core.update_payload("run", 0, "fp32", timeout=0.2)
    assert timeout.value.kind is ErrorKind.DEADLINE_EXCEEDED and "0 of 2 workers committed" in timeout.value.message
    waiter = asyncio.create_task(core.update_payload("run", 0, "int8", timeout=10.0))
    await _push(core, _write(tmp_path / "a.st", 1, 1e-2), run="run", round=0, worker="a")
    assert not waiter.done()
    await _push(core, _write(tmp_path / "b.st", 2, 1e-2), run="run", round=0, worker="b")
    served = await asyncio.wait_for(waiter, 10.0)
    assert served.layout.codec == "int8" and served.contributors == 2
    with pytest.raises(ParameterServerError) as future:
        await core.update_payload("run", 5, "fp32", timeout=0.1)
    assert future.value.reason == "ROUND_NOT_OPEN"
    await core.stop()


async def test_a_pull_with_timeout_zero_does_not_wait(tmp_path: Path) -> None:
    """Zero means zero: an open round answers ROUND_STILL_OPEN at once; a closed one is served."""
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=1, quorum=1)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ParameterServerError) as still_open:
        await core.update_payload("run", 0, "fp32", timeout=0)
    assert still_open.value.reason == "ROUND_STILL_OPEN" and asyncio.get_running_loop().time() - started < 1.0
    await _push(core, _write(tmp_path / "a.st", 1, 1e-2), run="run", round=0, worker="a")
    await core.update_payload("run", 0, "fp32", timeout=10.0)  # the round closed
    assert (await core.update_payload("run", 0, "fp32", timeout=0)).contributors == 1
    await core.stop()


async def test_a_failed_round_close_is_reported_and_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tendril.paramserver import core as core_module

    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=1, quorum=1)
    real_close_round = core_module.close_round
    calls: list[int] = []

    def broken_once(**kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")
        return real_close_round(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(core_module, "close_round", broken_once)
    await _push(core, _write(tmp_path / "a.st", 1, 1e-2), run="run", round=0, worker="a")
    with pytest.raises(ParameterServerError) as failed:
        await core.update_payload("run", 0, "fp32", timeout=10.0)
    assert failed.value.kind is ErrorKind.INTERNAL and "disk full" in failed.value.message
    with pytest.raises(ParameterServerError):
        core.get_round("run")
    assert core.runs["run"].state.round == 0  # nothing of the failed close was saved
    assert await core.open_job("run", core.runs["run"].state.config) == (0, False)  # reopen: retried
    served = await core.update_payload("run", 0, "fp32", timeout=10.0)
    assert served.contributors == 1 and core.get_round("run").round == 1
    await core.stop()


async def test_waiting_pulls_wake_even_if_telemetry_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tendril.core import metrics

    def broken(seconds: float | None) -> None:
        raise RuntimeError("metrics backend down")

    monkeypatch.setattr(metrics, "round_closed", broken)
    core = ParameterServerCore(tmp_path / "ps")
    await _open(core, tmp_path, "run", expected_workers=1, quorum=1)
    waiter = asyncio.create_task(core.update_payload("run", 0, "fp32", timeout=30.0))
    await asyncio.sleep(0)
    await _push(core, _write(tmp_path / "a.st", 1, 1e-2), run="run", round=0, worker="a")
    served = await asyncio.wait_for(waiter, 10.0)
    assert served.contributors == 1 and core.get_round("run").round == 1
    await core.stop()


async def test_the_newest_update_stays_until_its_contributors_asked_for_it(tmp_path: Path) -> None:
    """A push of the next round does not take the room of the update a slower contributor still has
    to pull (overlapped and streaming sync push round r+1 while round r's update travels)."""
    model = read_layout(_write(tmp_path / "m.st", 0)).total_bytes
    core = ParameterServerCore(tmp_path / "ps", memory_budget=model * 5 // 2)  # update + acc + push > budget
    await _open(core, tmp_path, "run", expected_workers=2, quorum=2, round_timeout_seconds=0)
    deltas = [_write(tmp_path / f"d{i}.st", 30 + i, 1e-2) for i in range(4)]
    await _push(core, deltas[0], run="run", round=0, worker="a")
    await _push(core, deltas[1], run="run", round=0, worker="b")
    first = bytes((await core.update_payload("run", 0, "", timeout=10.0, worker_id="a")).view or b"")
    await _push(core, deltas[2], run="run", round=1, worker="a")  # needs room the update holds
    served = await core.update_payload("run", 0, "", timeout=10.0, worker_id="b")
    assert served.view is not None and bytes(served.view) == first
    # Once every contributor asked for it, the update may go to make room.
    await _push(core, deltas[3], run="run", round=1, worker="b")
    await core.update_payload("run", 1, "", timeout=10.0, worker_id="a")
    await _push(core, deltas[0], run="run", round=2, worker="a")
    with pytest.raises(ParameterServerError) as gone:
        await core.update_payload("run", 0, "", timeout=10.0, worker_id="b")
    assert gone.value.reason == "UPDATE_GONE"
    await core.stop()
