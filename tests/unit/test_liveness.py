"""The liveness core: heartbeats and stalls, supervised loops, health that follows them, log writes that never raise."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tendril.core import liveness
from tendril.core.channel import open_channel
from tendril.core.liveness import HEALTH_NAME, Registry
from tendril.core.logs import UnfailingStream
from tendril.core.server import Binding, ServiceServer
from tendril_proto.gateway.v1 import gateway_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_loop_stalls_after_its_period_and_the_grace_but_never_while_idle() -> None:
    clock = Clock()
    registry = Registry(clock)
    beat = registry.register("pruner", every=1.0)
    watched_for_death_only = registry.register("follower")
    assert beat.stall_after == 1.0 + liveness.STALL_GRACE_SECONDS
    clock.now += beat.stall_after - 0.01
    assert registry.stalled() == []
    clock.now += 0.02
    assert [name for name, _ in registry.stalled()] == ["pruner"]
    beat.beat(clock.now)
    assert registry.stalled() == []
    beat.waiting = 1  # inside idle(): waiting for input is not stalling
    clock.now += 1000
    assert registry.stalled() == []
    beat.waiting = 0
    assert registry.stalled()[0][0] == "pruner"
    registry.unregister(beat)
    registry.unregister(watched_for_death_only)
    assert registry.stalled() == [] and registry.names() == []
    with pytest.raises(ValueError):
        registry.register("bad", every=0)


def test_time_the_event_loop_did_not_run_is_forgiven() -> None:
    clock = Clock()
    registry = Registry(clock)
    beat = registry.register("sweeper", every=1.0)
    clock.now += 10  # the event loop was blocked 10 s: the loop could not beat
    registry.forgive(9.5)
    assert registry.stalled() == []
    assert beat.last == 100.0 + 9.5


async def test_beat_and_idle_reach_the_heartbeat_of_the_running_supervised_loop() -> None:
    registry = Registry()
    beats: list[float] = []
    seen = asyncio.Event()

    async def loop() -> None:
        heartbeat = liveness._CURRENT.get()
        assert heartbeat is not None and heartbeat.name == "worker-loop"
        heartbeat.last = 0.0
        liveness.beat()
        beats.append(heartbeat.last)
        with liveness.idle():
            assert heartbeat.waiting == 1
        assert heartbeat.waiting == 0
        seen.set()
        await asyncio.Event().wait()

    task = liveness.supervised(loop(), name="worker-loop", every=1.0, registry=registry)
    await asyncio.wait_for(seen.wait(), 5)
    assert beats[0] > 0.0 and registry.names() == ["worker-loop"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)
    assert registry.names() == []  # cancelled: unregistered, no death
    liveness.beat()  # outside any supervised loop: a no-op
    with liveness.idle():
        pass


async def _ended(coro: object, *, forever: bool = True, registry: Registry | None = None) -> list[object]:
    deaths: list[object] = []
    task = liveness.supervised(
        coro,  # type: ignore[arg-type]
        name="loop",
        forever=forever,
        on_death=lambda name, error: deaths.append((name, error)),
        registry=registry or Registry(),
    )
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)
    return deaths


async def test_a_supervised_loop_that_raises_or_returns_is_a_death_unless_it_may_end_or_the_process_stops() -> None:
    async def boom() -> None:
        raise RuntimeError("disk full")

    async def done() -> None:
        return None

    deaths = await _ended(boom())
    assert len(deaths) == 1 and deaths[0][0] == "loop" and isinstance(deaths[0][1], RuntimeError)  # type: ignore[index]
    assert await _ended(done()) == [("loop", None)]
    assert await _ended(done(), forever=False) == []
    assert len(await _ended(boom(), forever=False)) == 1
    stopping = Registry()
    stopping.stopping = True
    assert await _ended(boom(), registry=stopping) == []


def test_a_loop_that_dies_takes_its_process_down_with_exit_70_and_says_why(tmp_path: Path) -> None:
    script = (
        "import asyncio\n"
        "from tendril.core import liveness\n"
        "async def loop():\n"
        "    raise OSError(28, 'No space left on device')\n"
        "async def main():\n"
        "    liveness.supervised(loop(), name='decisions')\n"
        "    await asyncio.sleep(30)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == liveness.EXIT_LOOP_DIED == 70
    assert "tendril: loop decisions raised OSError: [Errno 28] No space left on device" in done.stderr


async def test_fault_files_act_only_under_tendril_testing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def forever() -> None:
        while True:
            liveness.beat()
            await asyncio.sleep(0.01)

    (tmp_path / "loop.die").write_text("")
    monkeypatch.setenv(liveness.FAULT_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(liveness.TESTING_ENV, raising=False)
    registry = Registry()
    deaths: list[object] = []
    task = liveness.supervised(forever(), name="loop", registry=registry, on_death=lambda n, e: deaths.append(e))
    await asyncio.sleep(0.3)
    assert not task.done() and (tmp_path / "loop.die").exists()  # production: the file means nothing
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    monkeypatch.setenv(liveness.TESTING_ENV, "1")
    deaths = await _ended(forever(), registry=registry)
    assert isinstance(deaths[0][1], liveness.InjectedFault)  # type: ignore[index]
    assert not (tmp_path / "loop.die").exists()  # taken once: a restarted process runs clean

    (tmp_path / "loop.stall").write_text("")
    task = liveness.supervised(forever(), name="loop", every=0.05, registry=registry)
    await asyncio.sleep(0.3)
    heartbeat = next(b for b in registry._beats if b.name == "loop")
    assert heartbeat.muted and not (tmp_path / "loop.stall").exists()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _health(address: str, name: str) -> int:
    async with open_channel(address, peer_id="tester") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
    return int(reply.status)


async def _until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_health_is_not_serving_while_a_loop_is_stalled_and_serving_again_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(liveness, "STALL_GRACE_SECONDS", 0.2)
    name = "tendril.gateway.v1.RegistryService"
    server = ServiceServer(
        "127.0.0.1:0",
        [
            Binding(
                name, gateway_pb2_grpc.add_RegistryServiceServicer_to_server, gateway_pb2_grpc.RegistryServiceServicer()
            )
        ],
        config_key="test.listen",
    )
    await server.start()
    resume = asyncio.Event()

    async def stuck() -> None:
        while True:
            liveness.beat()
            await resume.wait()  # something that never comes, not marked idle
            resume.clear()

    task = liveness.supervised(stuck(), name="stuck-loop", every=0.1)
    try:
        for health_name in ("", name, HEALTH_NAME):
            assert await _health(server.address, health_name) == SERVING

        async def down() -> bool:
            return await _health(server.address, HEALTH_NAME) == NOT_SERVING

        await _until(down)
        assert await _health(server.address, "") == NOT_SERVING
        assert await _health(server.address, name) == NOT_SERVING
        assert not liveness.REGISTRY.alive()

        resume.set()  # it beats again: the process is whole again

        async def up() -> bool:
            return await _health(server.address, HEALTH_NAME) == SERVING

        await _until(up)
        assert await _health(server.address, "") == SERVING
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop(grace=0.1)


async def test_a_blocked_event_loop_is_not_blamed_on_the_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(liveness, "STALL_GRACE_SECONDS", 0.2)
    registry = Registry()
    changes: list[bool] = []

    async def listener(alive: bool, stalled: list[str]) -> None:
        changes.append(alive)

    async def ticking() -> None:
        while True:
            liveness.beat()
            await asyncio.sleep(0.05)

    task = liveness.supervised(ticking(), name="ticking", every=0.1, registry=registry)
    registry.subscribe(listener)
    try:
        await asyncio.sleep(0.3)
        time.sleep(1.0)  # noqa: ASYNC251 - a synchronous call holds the event loop: the watchdog sees it late
        await asyncio.sleep(0.6)
        assert changes == [] and registry.alive()
        assert registry.max_lag >= 0.7
    finally:
        registry.unsubscribe(listener)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_log_writes_never_raise_on_a_full_disk() -> None:
    full = open("/dev/full", "w")  # noqa: SIM115 - every write to it fails with ENOSPC
    try:
        stream = UnfailingStream(full)
        print("a line", file=stream, flush=True)  # type: ignore[arg-type]
        assert stream.lost >= 1
    finally:
        with contextlib.suppress(OSError):  # the unwritten line is still in its buffer
            full.close()
    script = (
        "from tendril.core.logs import configure, get_logger\n"
        "configure('arbiter', fmt='json')\n"
        "get_logger('x').error('still here', n=1)\n"
        "print('survived', flush=True)\n"
    )
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-c", script], stderr=full, stdout=subprocess.PIPE, text=True, timeout=60
        )
    assert done.returncode == 0 and done.stdout == "survived\n"
