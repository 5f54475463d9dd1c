"""Load figures of one gateway: publish → offer latency, registry writes, CPU and RSS, and how
many workers one gateway holds.

Set-up, all on 127.0.0.1:

* the gateway in its own process (``tendril gateway run``, the backend named by ``backend``:
  :data:`BACKENDS` maps a name to what it needs: for ``redis`` a private redis-server on a
  free port, started before the gateway and stopped after it), measured with psutil (the
  gateway's CPU and RSS; redis-server's own are in the details);
* N simulated workers in ``load_processes`` processes (:mod:`bench.gateway_load`): each
  refreshes its registry record every TTL/3 and keeps a Subscribe stream on the request topic;
* 20 schedulers in this process, each publishing ResourceRequests on the topic and serving a
  small gRPC endpoint that takes the offers.

An offer is a unary call from the worker straight to the publishing scheduler's endpoint, as
the Arbiter calls ``AllocationService.Offer``: in Tendril offers never pass through the
gateway, so a reply topic would load the gateway with traffic it does not carry in a network.
The latency of a (request, worker) pair is from just before the scheduler's Publish to the
offer's arrival at that scheduler (one clock: both ends are in this process); an offer that
never came counts as infinitely late.

N steps up (100, 250, 500, 1000, ...) until the p99 passes 1 s, the steps run out, or the time
budget does; every wait is bounded. The machine's few cores are shared by the gateway and
the load generator, so the details name which of them was busy (CPU in cores per process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import grpc
import psutil

from bench.common import Figure, data_plane_env, free_port
from tendril_proto.arbiter.v1 import arbiter_pb2
from tendril_proto.common.v1 import common_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tests.redis_proc import NO_REDIS, REDIS_SERVER, RedisServer


@contextlib.contextmanager
def _memory(work: Path) -> Iterator[tuple[list[str], psutil.Process | None]]:
    yield [], None


@contextlib.contextmanager
def _redis(work: Path) -> Iterator[tuple[list[str], psutil.Process | None]]:
    if REDIS_SERVER is None:
        raise RuntimeError(NO_REDIS)
    server = RedisServer(work / "redis")
    server.start()
    try:
        assert server.proc is not None
        yield ["--backend=redis", f"--redis-url={server.url}"], psutil.Process(server.proc.pid)
    finally:
        server.stop()


# backend name -> for the bench's work folder: the extra flags of `tendril gateway run` that select
# it, and the backend's own process (measured beside the gateway), alive for the block
BACKENDS: dict[str, Callable[[Path], contextlib.AbstractContextManager[tuple[list[str], psutil.Process | None]]]] = {
    "memory": _memory,
    "redis": _redis,
}
DEFAULT_STEPS = (100, 250, 500, 1000, 2000, 4000)
SCHEDULERS = 20
TOPIC = "tendril/worker"
OFFER_METHOD = "/bench.GatewayBench/Offer"
TARGET_P99_SECONDS = 1.0
REFERENCE_WORKERS = 1000  # the fixed figures are taken at this N (or the largest N run below it)


class Schedulers:
    """``count`` schedulers: each publishes requests and takes offers on its own endpoint."""

    def __init__(self, count: int, gateway: str) -> None:
        self.count = count
        self.gateway = gateway
        self.sent: dict[str, float] = {}  # request id -> perf_counter just before its Publish
        self.latencies: dict[str, list[float]] = {}  # request id -> offer latencies
        self.publish_failures = 0
        self._servers: list[grpc.aio.Server] = []
        self.addresses: list[str] = []
        self._channel: grpc.aio.Channel | None = None

    async def start(self) -> None:
        async def offer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            arrived = time.perf_counter()
            request_id = request.split(b"|", 1)[0].decode()
            sent = self.sent.get(request_id)
            if sent is not None:
                self.latencies.setdefault(request_id, []).append(arrived - sent)
            return b""

        handler = grpc.method_handlers_generic_handler(
            "bench.GatewayBench", {"Offer": grpc.unary_unary_rpc_method_handler(offer)}
        )
        for _ in range(self.count):
            server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            server.add_generic_rpc_handlers((handler,))
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            self._servers.append(server)
            self.addresses.append(f"127.0.0.1:{port}")
        self._channel = grpc.aio.insecure_channel(self.gateway)

    async def publish_for(self, seconds: float, rate: float, step: int) -> int:
        """Every scheduler publishes at ``rate``/count per second, staggered, for ``seconds``."""
        assert self._channel is not None
        bus = gateway_pb2_grpc.BusServiceStub(self._channel)
        interval = self.count / rate
        deadline = time.perf_counter() + seconds

        async def one(index: int) -> int:
            await asyncio.sleep(index * interval / self.count)
            scheduler_id = f"bench-scheduler-{index:02d}"
            metadata = (("tendril-peer-id", scheduler_id),)
            n = 0
            while time.perf_counter() < deadline:
                request_id = f"s{step}-{index}-{n}"
                request = arbiter_pb2.ResourceRequest(
                    request_id=request_id,
                    scheduler=common_pb2.PeerRef(id=scheduler_id, address=self.addresses[index]),
                    resources=common_pb2.Resources(cpu=1.0),
                    bid=1.0,
                )
                envelope = gateway_pb2.PublishRequest(topic=TOPIC, sender=scheduler_id)
                envelope.payload.Pack(request)
                self.sent[request_id] = time.perf_counter()
                try:
                    await bus.Publish(envelope, metadata=metadata, timeout=5)
                except grpc.aio.AioRpcError:
                    self.publish_failures += 1
                n += 1
                await asyncio.sleep(interval)
            return n

        return sum(await asyncio.gather(*(one(i) for i in range(self.count))))

    def reset(self) -> None:
        self.sent.clear()
        self.latencies.clear()
        self.publish_failures = 0

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        await asyncio.gather(*(server.stop(0) for server in self._servers))


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.inf
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _merged(counts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for one in counts:
        for key, n in one.items():
            out[key] = out.get(key, 0) + n
    return out


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _too_slow(result: dict[str, Any]) -> bool:
    return result["p99_seconds"] is None or result["p99_seconds"] > TARGET_P99_SECONDS


def _bound(result: dict[str, Any]) -> str:
    """Which side the offer latency of a step is mostly spent in."""
    delivery, offer = result["delivery_p99_seconds"], result["p99_seconds"]
    if delivery is None or offer is None:
        return "unknown (messages or offers missing)"
    share = f"delivery p99 {delivery:.3f} s of offer p99 {offer:.3f} s"
    # NOTE: delivery counts the gateway's fan-out and the workers' event loops reading it; the
    # processes' CPU in the details tells whether either was near a core of its own.
    if delivery >= 0.5 * offer:
        return f"the fan-out: the gateway's streams and the workers reading them ({share})"
    return f"the offer path in the load generator and schedulers, not the gateway ({share})"


def _tendril_command() -> list[str]:
    script = shutil.which("tendril", path=str(Path(sys.executable).parent))
    if script:
        return [script]
    return [sys.executable, "-c", "import sys; from tendril.cli.main import main; sys.exit(main())"]


def _log_file(path: Path) -> BinaryIO:
    return open(path, "wb")


async def _read_json_line(stream: asyncio.StreamReader, key: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(stream.readline(), timeout=max(deadline - time.monotonic(), 0.01))
        if not line:
            break
        with contextlib.suppress(ValueError):
            got = json.loads(line)
            if isinstance(got, dict) and key in got:
                return got
    raise TimeoutError(f"no {key!r} line from a load process within {timeout} s")


async def _step(
    n: int,
    *,
    gateway: str,
    gateway_proc: psutil.Process,
    backend_proc: psutil.Process | None,
    schedulers: Schedulers,
    load_processes: int,
    per_channel: int,
    ttl: float,
    window: float,
    rate: float,
    logs: Path,
) -> dict[str, Any]:
    counts = [n // load_processes + (1 if i < n % load_processes else 0) for i in range(load_processes)]
    procs: list[asyncio.subprocess.Process] = []
    files: list[BinaryIO] = []
    try:
        for i, count in enumerate(c for c in counts if c):
            files.append(_log_file(logs / f"load-{n}-{i}.log"))
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.gateway_load",
                    f"--gateway={gateway}",
                    f"--count={count}",
                    f"--prefix=w{n}-{i}",
                    f"--ttl={ttl}",
                    f"--per-channel={per_channel}",
                    f"--seconds={window + 120}",
                    stdout=asyncio.subprocess.PIPE,
                    stderr=files[-1],
                    limit=64 << 20,  # the last line lists every delivery time
                    env=data_plane_env(),
                    start_new_session=True,
                )
            )
        ready = [await _read_json_line(p.stdout, "ready", 90) for p in procs if p.stdout is not None]
        subscribed = sum(int(r["ready"]) for r in ready)
        load_ps = [psutil.Process(p.pid) for p in procs]
        # NOTE: one TTL/3 of refreshes before measuring, so every worker's record is in its steady refresh.
        await asyncio.sleep(min(ttl / 3, 5.0))
        schedulers.reset()
        cpu0 = gateway_proc.cpu_times()
        backend_cpu0 = backend_proc.cpu_times() if backend_proc else None
        load_cpu0 = [p.cpu_times() for p in load_ps]
        own0 = psutil.Process().cpu_times()
        t0 = time.perf_counter()
        published = await schedulers.publish_for(window, rate, n)
        await asyncio.sleep(2.0)  # late offers
        elapsed = time.perf_counter() - t0
        cpu1 = gateway_proc.cpu_times()
        backend_cpu1 = backend_proc.cpu_times() if backend_proc else None
        backend_rss = backend_proc.memory_info().rss if backend_proc else None
        load_cpu1 = [p.cpu_times() for p in load_ps]
        own1 = psutil.Process().cpu_times()
        rss = gateway_proc.memory_info().rss
        for p in procs:
            p.terminate()
        done = [await _read_json_line(p.stdout, "done", 30) for p in procs if p.stdout is not None]
    finally:
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(p.wait(), 10)
        for f in files:
            f.close()
    expected = published * subscribed
    latencies = [x for values in schedulers.latencies.values() for x in values]
    missing = max(expected - len(latencies), 0)
    padded = latencies + [math.inf] * missing

    def busy(a: Any, b: Any) -> float:
        return round((b.user + b.system - a.user - a.system) / elapsed, 3)

    delivery = [x for d in done for x in d["done"].pop("delivery_seconds", [])]
    totals = {key: sum(int(d["done"].get(key, 0)) for d in done) for key in ("puts_ok", "puts_failed", "offers_failed")}
    return {
        "workers": n,
        "subscribed": subscribed,
        "requests_published": published,
        "publish_failures": schedulers.publish_failures,
        "offers_expected": expected,
        "offers_received": len(latencies),
        "offers_missing": missing,
        # None: more offers than that share never came
        "p50_seconds": _finite(_percentile(padded, 0.50)),
        "p99_seconds": _finite(_percentile(padded, 0.99)),
        "max_seconds": _finite(max(latencies, default=math.inf)),
        # the gateway's share: its published_at stamp to a worker reading the message
        "delivery_p50_seconds": _finite(_percentile(delivery, 0.50)),
        "delivery_p99_seconds": _finite(_percentile(delivery, 0.99)),
        # each process's Puts over its whole life (set-up included: refreshes start at a random phase)
        "registry_writes_per_second": round(
            sum(d["done"]["puts_ok"] / max(d["done"]["seconds"], 1e-9) for d in done), 1
        ),
        "puts_ok": totals["puts_ok"],
        "puts_failed": totals["puts_failed"],
        "offers_failed": totals["offers_failed"],
        "put_failures_by_code": _merged([d["done"].get("put_failures", {}) for d in done]),
        "gateway_cpu_cores": busy(cpu0, cpu1),
        "gateway_rss_bytes": rss,
        # the backend's own server (redis-server), None for memory
        "backend_cpu_cores": busy(backend_cpu0, backend_cpu1) if backend_cpu0 and backend_cpu1 else None,
        "backend_rss_bytes": backend_rss,
        "backend_pid": backend_proc.pid if backend_proc else None,
        "load_cpu_cores": [busy(a, b) for a, b in zip(load_cpu0, load_cpu1, strict=True)],
        "schedulers_cpu_cores": busy(own0, own1),
        "window_seconds": round(elapsed, 2),
        "load_process_reports": [d["done"] for d in done],
    }


async def _run(
    work: Path,
    backend: str,
    steps: Sequence[int],
    *,
    schedulers_count: int,
    load_processes: int,
    per_channel: int,
    ttl: float,
    window: float,
    rate: float,
    budget_seconds: float,
) -> tuple[list[dict[str, Any]], str, str]:
    logs = work / "gateway-bench"
    logs.mkdir(parents=True, exist_ok=True)
    with BACKENDS[backend](work / "gateway-backend") as (flags, backend_proc):
        return await _run_gateway(
            logs,
            flags,
            backend_proc,
            steps,
            schedulers_count=schedulers_count,
            load_processes=load_processes,
            per_channel=per_channel,
            ttl=ttl,
            window=window,
            rate=rate,
            budget_seconds=budget_seconds,
        )


async def _run_gateway(
    logs: Path,
    flags: list[str],
    backend_proc: psutil.Process | None,
    steps: Sequence[int],
    *,
    schedulers_count: int,
    load_processes: int,
    per_channel: int,
    ttl: float,
    window: float,
    rate: float,
    budget_seconds: float,
) -> tuple[list[dict[str, Any]], str, str]:
    port = free_port()
    gateway = f"127.0.0.1:{port}"
    log = _log_file(logs / "gateway.log")
    proc = await asyncio.create_subprocess_exec(
        *_tendril_command(),
        "gateway",
        "run",
        f"--listen={gateway}",
        "--log-level=warning",
        *flags,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
        env=data_plane_env(),
        start_new_session=True,
    )
    results: list[dict[str, Any]] = []
    schedulers = Schedulers(schedulers_count, gateway)
    stopped = "steps ran out"
    try:
        async with grpc.aio.insecure_channel(gateway) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
        gateway_proc = psutil.Process(proc.pid)
        await schedulers.start()
        started = time.monotonic()
        for n in steps:
            if time.monotonic() - started > budget_seconds:
                stopped = f"time budget of {budget_seconds:g} s spent"
                break
            result = await _step(
                n,
                gateway=gateway,
                gateway_proc=gateway_proc,
                backend_proc=backend_proc,
                schedulers=schedulers,
                load_processes=load_processes,
                per_channel=per_channel,
                ttl=ttl,
                window=window,
                rate=rate,
                logs=logs,
            )
            results.append(result)
            print(
                f"bench: gateway {n} workers: p50 {result['p50_seconds']} s, p99 {result['p99_seconds']} s, "
                f"gateway CPU {result['gateway_cpu_cores']} cores, load CPU {result['load_cpu_cores']}",
                file=sys.stderr,
                flush=True,
            )
            if _too_slow(result):
                stopped = f"p99 passed {TARGET_P99_SECONDS:g} s at {n} workers"
                break
    finally:
        await schedulers.stop()
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()
    return results, stopped, gateway


def measure(
    work: Path,
    *,
    backend: str = "memory",
    steps: Sequence[int] = DEFAULT_STEPS,
    schedulers: int = SCHEDULERS,
    load_processes: int = 2,
    per_channel: int = 50,
    ttl: float = 15.0,
    window: float = 10.0,
    requests_per_second: float = 2.0,
    budget_seconds: float = 180.0,
) -> list[Figure]:
    """The gateway's load figures (names contain "gateway")."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown gateway backend {backend!r}; choose from {', '.join(BACKENDS)}")
    load_before = os.getloadavg()
    results, stopped, address = asyncio.run(
        _run(
            work,
            backend,
            steps,
            schedulers_count=schedulers,
            load_processes=load_processes,
            per_channel=per_channel,
            ttl=ttl,
            window=window,
            rate=requests_per_second,
            budget_seconds=budget_seconds,
        )
    )
    load_after = os.getloadavg()
    if not results:
        return [Figure.not_measured(f"gateway ({backend})", stopped)]
    passing = [r for r in results if not _too_slow(r)]
    reference = max(
        (r for r in results if r["workers"] <= REFERENCE_WORKERS), key=lambda r: r["workers"], default=results[0]
    )
    n = reference["workers"]
    cores = os.cpu_count() or 1
    bound = _bound(reference)
    setup = (
        f"{backend} backend, {schedulers} schedulers publishing {requests_per_second:g} requests/s in all, "
        f"records refreshed every {ttl / 3:g} s (TTL {ttl:g} s), {load_processes} load processes, "
        f"{cores} CPUs, load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    details = {
        "backend": backend,
        "gateway": address,
        "steps": results,
        "stopped": stopped,
        "setup": setup,
        "bounded_by_at_reference": bound,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "offer_path": "unary call from the worker straight to the publishing scheduler (as Arbiter → Offer)",
    }
    at = f"{n} workers"
    held = max((r["workers"] for r in passing), default=0)
    failed_at = next((r["workers"] for r in results if _too_slow(r)), None)
    held_note = (
        f"p99 passed 1 s at {failed_at} workers" if failed_at else f"p99 stayed ≤ 1 s up to {held} workers ({stopped})"
    )

    def fig(name: str, value: float | None, unit: str, note: str = "", **extra: Any) -> Figure:
        return Figure(f"gateway ({backend}) {name}", value, unit, note=note, details=details | extra)

    p99 = reference["p99_seconds"]
    return [
        fig(f"publish→offer latency p50, {at}", reference["p50_seconds"], "s", setup),
        Figure(
            f"gateway ({backend}) publish→offer latency p99, {at}",
            p99,
            "s",
            target=f"≤ {TARGET_P99_SECONDS:g} s",
            ok=not _too_slow(reference),
            note=f"{reference['offers_received']}/{reference['offers_expected']} offers; bound by {bound}",
            details=details,
        ),
        fig(
            f"publish→delivery latency p99, {at}",
            reference["delivery_p99_seconds"],
            "s",
            f"the gateway's share: published_at to a worker reading it (p50 {reference['delivery_p50_seconds']} s)",
        ),
        fig(f"registry writes/s, {at}", reference["registry_writes_per_second"], "1/s"),
        fig(
            f"CPU, {at}",
            reference["gateway_cpu_cores"],
            "cores",
            f"load processes {reference['load_cpu_cores']} cores, schedulers {reference['schedulers_cpu_cores']}"
            + ("" if reference["backend_cpu_cores"] is None else f", redis-server {reference['backend_cpu_cores']}"),
        ),
        fig(
            f"RSS, {at}",
            float(reference["gateway_rss_bytes"]),
            "bytes",
            "" if reference["backend_rss_bytes"] is None else f"redis-server {reference['backend_rss_bytes']} bytes",
        ),
        fig("workers held at p99 offer ≤ 1 s", float(held), "workers", held_note),
    ]
