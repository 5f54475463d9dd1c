"""Round sync: Tendril's parameter server beside torch.distributed gloo all_reduce, same run.

What a DiLoCo user would run instead of a parameter server is an all_reduce of the
pseudo-gradient Δ among the workers followed by each worker's own outer Nesterov step
(OpenDiLoCo, torchft). This section measures both on this machine, 3 processes on 127.0.0.1,
for payloads of M bytes (``--sync-mb``, MB = 10^6 bytes; Δ is M bytes of fp32) and each
codec of ``--sync-codecs`` (fp32, bf16, int8, int4, sparse; a sparse run's update is pulled as int8).

Processes:

* this one (the orchestrator): a ``torch.distributed.TCPStore`` on 127.0.0.1 (port chosen by the
  OS), a real ParameterServer (``python -m tendril.paramserver --config-json``, data-plane
  environment), and per (size, codec) a run opened with OpenJob (3 expected workers, quorum
  3, the codec, outer lr 0.7, momentum 0.9), θ0 pushed, and a WatchRound stream that stamps
  the moment each round closes (stops taking pushes) and the moment its update is ready (the
  next round opens);
* three workers (``python -m bench.sync worker``, data-plane environment, GLOO_SOCKET_IFNAME=lo),
  each holding the same-size seeded fp32 Δ (a different seed per worker) and θ. They form one
  gloo process group through the store and, per round, run one repeat of each side:

  - baseline: ``all_reduce(Δ)`` of one flat buffer, divided by the world size, then the
    worker's own ``torch.optim.SGD(nesterov=True, lr=0.7, momentum=0.9)`` step with
    ``p.grad = Δ_mean``; seconds = max over workers of (all_reduce + division + step);
    all_reduce alone is kept too;
  - Tendril, as the DiLoCo executor and its bridge do it: ``tendril_diloco.params.HandOff``
    writes Δ (the executor's own writer) into a work dir, ``tensorstream.push_update``
    (SendUpdate's call), ``tensorstream.pull_update`` of the round's update (ReceiveUpdate's
    call with ``reuse_files``, as the executor asks for it), ``params.Updates.load`` and
    ``apply_update`` (θ + u); seconds = from the barrier to the moment the last worker has
    θ_new in memory. The work dirs are in the bench's temporary folder unless
    ``--sync-work-dir`` names another, each made as a worker makes it: ``updates/``, and
    ``handoff/`` linked to a folder of its own under ``--sync-handoff-dir`` (as a worker's
    ``job.handoff_dir``, /dev/shm by default) where that is held in memory. Each worker puts Δ
    and u where the DiLoCo executor would (``tendril_sdk.handoff_folder``): in files kept from
    round to round on a file system held in memory (``tendril_sdk.files``; the first two rounds
    write them afresh), else into new files in ``updates/``.

The orchestrator also reads the ParameterServer's CPU time (user and system, all its threads,
``/proc/<pid>/stat``) from the moment a run's workers start until the server is idle after its
last round: the note gives it per round (warm-up round and every checkpoint included).

Fairness: both sides start each repeat from a gloo barrier (after which each worker stamps
its start on CLOCK_MONOTONIC, one clock for every process of the machine); before every
barrier, worker 0 waits (≤ 5 s, recorded with the machine's dirty page cache) until the
ParameterServer has been idle for 0.1 s and no page writeback is in flight, so that work left
over from a round never lands in the next timed repeat of either side. Repeats are interleaved
and take turns going first (Tendril, gloo, gloo, Tendril, ...) so that load from other
processes on a shared machine hits both alike. The first two rounds of every (size, codec) run,
and the first two gloo repeats, are warm-up (see WARMUP). bf16/int8/int4 are compared against
the same fp32 gloo baseline: gloo has no such codecs (it can all_reduce bf16 tensors, but sums
them in bf16 at every hop, where the parameter server accumulates in fp32; an int8 all_reduce
has no scales).

Worker processes run as ``python -m bench.sync worker --rank R --store-port P ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import Figure, spawn_on_free_ports, spawn_python, stop

if TYPE_CHECKING:
    import grpc
    import torch

MB = 1_000_000
WORLD = 3
OUTER_LR = 0.7
OUTER_MOMENTUM = 0.9
THETA_SEED = 1
DELTA_SEED = 100  # worker r's Δ uses DELTA_SEED + r
DELTA_SCALE = 1e-3
DEFAULT_SIZES_MB = (40, 400)
DEFAULT_CODECS = ("fp32", "bf16", "int8", "int4", "sparse")
DEFAULT_ROUNDS = 5  # the first WARMUP are warm-up
DEFAULT_HANDOFF_DIR = Path("/dev/shm")  # as a worker's job.handoff_dir
# NOTE: two warm-up rounds: a worker's files of each kind are two kept files taken in turn
# (tendril_sdk.files.Reusable), made in the first round and first mapped in the first and the
# second; from the third round on a round finds them as every later one does. The warm-up
# rounds' times are in the figure's details (warmup_sync_seconds_rounds).
WARMUP = 2
STORE_TIMEOUT = timedelta(seconds=600)
PULL_TIMEOUT_S = 600.0
QUIET_WINDOW_S = 0.1
QUIET_CPU_S = 0.011  # at most about one clock tick of CPU in the window counts as idle
QUIET_MAX_S = 5.0
PARTS = ("write", "push", "wait", "pull", "load", "apply")
PART_NAMES = {
    "write": "write Δ",
    "push": "push",
    "wait": "wait for close",
    "pull": "pull",
    "load": "load u",
    "apply": "θ + u",
}
BASELINE_NAME = "gloo all_reduce + local outer Nesterov, 3 processes, 127.0.0.1"
# NOTE: why bf16/int8/int4 runs are held against the fp32 all_reduce.
GLOO_CODECS = {
    "bf16": "gloo has no bf16 codec (a bf16 all_reduce would sum in bf16 at every hop)",
    "int8": "gloo has no int8 codec (no per-block scales; an int8 all_reduce sums raw integers)",
    "int4": "gloo has no int4 codec (no 4-bit dtype, no per-block scales)",
    "sparse": "gloo has no sparse codec (an all_gather of top-k would be its counterpart)",
}
TARGET_RATIO = 1.5


# -- what every process agrees on ---------------------------------------------------------------


def tensor_counts(size_bytes: int) -> dict[str, int]:
    """Element counts of a 4-tensor fp32 model of ``size_bytes`` (like a small transformer's)."""
    elements = size_bytes // 4
    if elements < 8192:
        raise ValueError(f"a sync payload needs at least 32768 bytes, got {size_bytes}")
    wte, attn = elements // 2, elements // 4
    return {"wte": wte, "h.0.attn": attn, "h.0.mlp": elements - wte - attn - 1024, "ln_f": 1024}


def make_tensors(counts: dict[str, int], seed: int, scale: float) -> dict[str, torch.Tensor]:
    """Seeded normal fp32 tensors, one per name (separate storages: SafeTensors refuses shared ones)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(count, generator=generator).mul_(scale) for name, count in counts.items()}


def run_id(mb: int, codec: str) -> str:
    return f"sync-{mb}mb-{codec}"


def _cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far."""
    return sum(_cpu_times(pid))


def _meminfo_mib(*keys: str) -> dict[str, float]:
    """Lines of /proc/meminfo in MiB."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in keys:
                out[name] = int(rest.split()[0]) / 1024
    return out


def wait_quiet(pid: int) -> dict[str, float]:
    """Wait (≤ QUIET_MAX_S) until process ``pid`` used (almost) no CPU for QUIET_WINDOW_S and the
    machine has no page writeback in flight; what it waited, and the dirty page cache then."""
    start = time.monotonic()
    while time.monotonic() - start < QUIET_MAX_S:
        before = _cpu_seconds(pid)
        time.sleep(QUIET_WINDOW_S)
        if _cpu_seconds(pid) - before < QUIET_CPU_S and _meminfo_mib("Writeback")["Writeback"] == 0:
            break
    pages = _meminfo_mib("Dirty", "Writeback")
    return {
        "seconds": round(time.monotonic() - start, 3),
        "dirty_mib": round(pages["Dirty"], 1),
        "writeback_mib": round(pages["Writeback"], 1),
    }


# -- the worker processes -----------------------------------------------------------------------


class GlooBaseline:
    """θ, momentum and a flat Δ buffer for the all_reduce + local outer Nesterov step."""

    def __init__(self, counts: dict[str, int], delta: dict[str, torch.Tensor]) -> None:
        import torch

        self.delta = delta
        self.params = [torch.nn.Parameter(t) for t in make_tensors(counts, THETA_SEED, 1.0).values()]
        self.flat = torch.empty(sum(counts.values()), dtype=torch.float32)
        # NOTE: p.grad are views of the one flat buffer the all_reduce averages in place (one
        # collective call, as a bucketed all_reduce does), so the step reads Δ_mean directly.
        for param, view in zip(self.params, self.flat.split(list(counts.values())), strict=True):
            param.grad = view
        self.optimizer = torch.optim.SGD(self.params, lr=OUTER_LR, momentum=OUTER_MOMENTUM, nesterov=True)

    def repeat(self, barrier: Callable[[str], None]) -> dict[str, float]:
        import torch
        import torch.distributed as dist

        # NOTE: all_reduce works in place: a fresh Δ, untimed, once every worker is done with the
        # round before (copying 400 MB beside a worker still applying its update slowed it down).
        dist.barrier()
        torch.cat(list(self.delta.values()), out=self.flat)
        barrier("gloo")
        start = time.monotonic()
        dist.all_reduce(self.flat)
        reduced = time.monotonic()
        self.flat.div_(WORLD)
        self.optimizer.step()
        return {"start": start, "reduced": reduced, "end": time.monotonic()}


class KeptFiles:
    """A worker's files kept from round to round, as its executor (Δ) and bridge (u) keep them,
    in the hand-off folder the executor picks for a model of ``nbytes`` (tendril_sdk.handoff_folder):
    handoff/ (held in memory) where the worker offers it and they fit, else updates/."""

    def __init__(self, work: Path, nbytes: int) -> None:
        from tendril_diloco.params import HandOff, Updates
        from tendril_sdk.files import Reusable, handoff_folder

        self.name = handoff_folder(work, nbytes)
        self.folder = work / self.name
        self.delta = HandOff(self.folder / ".reused", "delta")
        self.update = Reusable(self.folder / ".reused", "update")
        self.coded: dict[str, Reusable] = {}  # by stem: what the bridge encodes Δ into, receives an update into
        self.updates = Updates()


async def tendril_round(
    channel: grpc.aio.Channel,
    *,
    rid: str,
    round: int,
    rank: int,
    codec: str,
    theta: dict[str, torch.Tensor],
    delta: dict[str, torch.Tensor],
    work: Path,
    kept: KeptFiles,
    barrier: Callable[[str], None],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """One round as the DiLoCo executor syncs: write Δ, SendUpdate's push, ReceiveUpdate's pull, θ + u."""
    from tendril.core import tensorstream
    from tendril.core.streaming import Digest
    from tendril_diloco.params import apply_update
    from tendril_sdk.files import Reusable

    delta_path = kept.folder / f"delta-{round:05d}.safetensors"
    update_path = kept.folder / f"update-{round:05d}.safetensors"
    barrier("tendril")
    start = time.monotonic()
    digest = kept.delta.write(delta, delta_path)
    written = time.monotonic()
    # as the bridge's SendUpdate does: another codec than fp32 is encoded into a kept file in place
    payloads = kept.coded.setdefault(f"payload-{codec}", Reusable(kept.folder / ".reused", f"payload-{codec}"))
    encoded = payloads.take() if codec != "fp32" else None
    sent = await tensorstream.push_update(
        channel,
        delta_path,
        run_id=rid,
        round=round,
        worker_id=f"w{rank}",
        weight=1.0,
        codec=codec,
        # (the writer's digest, as the executor gives it to SendUpdate)
        digest=Digest(*digest.split(":", 1)) if digest else None,
        encoded=None if encoded is None else (encoded, payloads.mapping),
    )
    if encoded is not None:
        payloads.fill_from(encoded)
    pushed = time.monotonic()
    delta_path.unlink()
    pull_start = time.monotonic()
    scratch = kept.update.take()
    receiving = kept.coded.setdefault(f"received-{codec}", Reusable(kept.folder / ".reused", f"received-{codec}"))
    incoming = scratch if codec == "fp32" or scratch is None else receiving.take()
    received, contributors = await tensorstream.pull_update(
        channel,
        run_id=rid,
        round=round,
        dest=update_path,
        codec=codec,
        timeout=PULL_TIMEOUT_S,
        worker_id=f"w{rank}",
        # as the bridge's ReceiveUpdate does: fp32 received in place, another codec received into a
        # kept file of its own and decoded in place
        scratch=incoming,
        mapped=kept.update.mapping if codec == "fp32" else receiving.mapping,
        decoded=(scratch, kept.update.mapping) if scratch is not None and codec != "fp32" else None,
    )
    if scratch is not None:
        kept.update.fill_from(scratch)
    if incoming is not None and codec != "fp32":
        receiving.fill_from(incoming)
    pulled = time.monotonic()
    update = kept.updates.load(update_path)  # as the executor reads it (tendril_diloco.params.Updates)
    loaded = time.monotonic()
    theta = apply_update(theta, update, in_place=True)
    end = time.monotonic()
    del update  # (its file may be received into again two rounds on)
    update_path.unlink()
    if contributors != WORLD:
        raise RuntimeError(f"round {round} of {rid} closed with {contributors} contributors, expected {WORLD}")
    stamps = {
        "start": start,
        "written": written,
        "pushed": pushed,
        "pull_start": pull_start,
        "pulled": pulled,
        "loaded": loaded,
        "end": end,
        "bytes_sent": sent,
        "bytes_received": received,
    }
    return theta, stamps


async def run_worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    from tendril.core.channel import open_channel

    rank = args.rank
    store = dist.TCPStore("127.0.0.1", args.store_port, None, False, timeout=STORE_TIMEOUT)
    dist.init_process_group(
        "gloo", store=dist.PrefixStore("gloo", store), rank=rank, world_size=WORLD, timeout=STORE_TIMEOUT
    )
    quiet: list[dict[str, Any]] = []

    def barrier(before: str) -> None:
        if rank == 0:
            quiet.append({"before": before, **wait_quiet(args.ps_pid)})
        dist.barrier()

    work = Path(args.work)
    try:
        async with open_channel(args.paramserver, peer_id=f"sync-w{rank}") as channel:
            for mb in args.sizes_mb:
                counts = tensor_counts(mb * MB)
                delta = make_tensors(counts, DELTA_SEED + rank, DELTA_SCALE)
                gloo = GlooBaseline(counts, delta)
                kept = KeptFiles(work, mb * MB)
                for codec in args.codecs:
                    rid = run_id(mb, codec)
                    theta = make_tensors(counts, THETA_SEED, 1.0)  # θ0, as the PS holds it
                    store.wait([f"{rid}/open"])
                    quiet.clear()
                    result: dict[str, Any] = {"gloo": [], "tendril": [], "handoff_folder": kept.name}
                    for r in range(args.rounds):
                        # NOTE: the sides take turns going first, so that neither is always the
                        # one that runs right after the other (page cache, writeback, caches).
                        if r % 2:
                            result["gloo"].append(gloo.repeat(barrier))
                        theta, stamps = await tendril_round(
                            channel,
                            rid=rid,
                            round=r,
                            rank=rank,
                            codec=codec,
                            theta=theta,
                            delta=delta,
                            work=work,
                            kept=kept,
                            barrier=barrier,
                        )
                        result["tendril"].append(stamps)
                        if not r % 2:
                            result["gloo"].append(gloo.repeat(barrier))
                    result["quiet_before_repeats"] = list(quiet)
                    store.set(f"{rid}/result/{rank}", json.dumps(result))
                    del theta
                del gloo, delta, kept
    finally:
        dist.destroy_process_group()


def worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sync worker")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--store-port", type=int, required=True)
    parser.add_argument("--paramserver", required=True, help="host:port of the ParameterServer")
    parser.add_argument("--ps-pid", type=int, required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--sizes-mb", type=lambda s: [int(x) for x in s.split(",")], required=True)
    parser.add_argument("--codecs", type=lambda s: s.split(","), required=True)
    parser.add_argument("--rounds", type=int, required=True)
    asyncio.run(run_worker(parser.parse_args(argv)))


# -- the orchestrator (this process) ------------------------------------------------------------


def _worker_log(workdir: Path, rank: int) -> Path:
    return workdir / f"sync-worker-{rank}.log"


class RoundWatch:
    """WatchRound of one run: every state change stamped (monotonic time, round, RoundState)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, int, int]] = []
        self.changed = asyncio.Condition()

    async def run(self, stub: Any, rid: str) -> None:
        from tendril_proto.paramserver.v1 import paramserver_pb2

        async for reply in stub.WatchRound(paramserver_pb2.WatchRoundRequest(run_id=rid)):
            self.events.append((time.monotonic(), int(reply.status.round), int(reply.status.state)))
            async with self.changed:
                self.changed.notify_all()

    async def until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds after a change; False when ``timeout`` seconds passed first."""
        try:
            async with self.changed:
                await asyncio.wait_for(self.changed.wait_for(predicate), timeout)
        except TimeoutError:
            return False
        return True


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _results(
    store: Any, rid: str, workers: Sequence[subprocess.Popen[bytes]], workdir: Path, limit: float
) -> list[dict[str, Any]]:
    """Every worker's result of run ``rid``; raises when a worker died or ``limit`` seconds passed."""
    keys = [f"{rid}/result/{rank}" for rank in range(WORLD)]
    deadline = time.monotonic() + limit
    while not store.check(keys):
        for rank, proc in enumerate(workers):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"sync worker {rank} exited with {proc.returncode} during run {rid}; its log ends:\n"
                    + _log_tail(_worker_log(workdir, rank))
                )
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {rid} did not finish within {limit:.0f} s")
        await asyncio.sleep(0.05)
    return [json.loads(store.get(key)) for key in keys]


async def _drive(
    address: str,
    store: Any,
    workers: Sequence[subprocess.Popen[bytes]],
    workdir: Path,
    sizes_mb: Sequence[int],
    codecs: Sequence[str],
    rounds: int,
    ps_pid: int,
) -> list[dict[str, Any]]:
    from tendril.core import tensorstream
    from tendril.core.channel import open_channel
    from tendril.core.streaming import codec_to_proto
    from tendril_diloco.params import save_params
    from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc

    runs = []
    theta0 = workdir / "sync-theta0.safetensors"
    async with open_channel(address, peer_id="sync-bench") as channel:
        stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
        for mb in sizes_mb:
            counts = tensor_counts(mb * MB)
            await asyncio.to_thread(lambda c=counts: save_params(make_tensors(c, THETA_SEED, 1.0), theta0))
            try:
                for codec in codecs:
                    rid = run_id(mb, codec)
                    await stub.OpenJob(
                        paramserver_pb2.OpenJobRequest(
                            run_id=rid,
                            expected_workers=WORLD,
                            quorum=WORLD,
                            codec=codec_to_proto(codec),
                            outer_lr=OUTER_LR,
                            outer_momentum=OUTER_MOMENTUM,
                            rounds=0,
                        )
                    )
                    await tensorstream.push_parameters(channel, theta0, run_id=rid, worker_id="sync-bench")
                    watch = RoundWatch()
                    watcher = asyncio.create_task(watch.run(stub, rid))
                    if not await watch.until(lambda w=watch: bool(w.events), 30):
                        raise TimeoutError(f"WatchRound of run {rid} said nothing in 30 s")
                    load_before = os.getloadavg()
                    cpu_before = _cpu_times(ps_pid)
                    store.set(f"{rid}/open", "1")
                    try:
                        results = await _results(
                            store, rid, workers, workdir, limit=120 + rounds * max(10.0, mb * 0.25)
                        )
                        # The workers may be done before this loop has read the last change.
                        await watch.until(lambda w=watch: any(seen >= rounds for _, seen, _ in w.events), 10)
                    finally:
                        watcher.cancel()
                    # The rounds' own work, up to the last checkpoint (the workers' last barrier waited for it
                    # only when another repeat followed).
                    await asyncio.to_thread(wait_quiet, ps_pid)
                    cpu_after = _cpu_times(ps_pid)
                    await stub.CloseJob(paramserver_pb2.CloseJobRequest(run_id=rid, purge=True))
                    runs.append(
                        {
                            "mb": mb,
                            "codec": codec,
                            "workers": results,
                            "events": watch.events,
                            "load_average_before": [round(x, 2) for x in load_before],
                            "load_average_after": [round(x, 2) for x in os.getloadavg()],
                            "ps_cpu_seconds": [round(b - a, 2) for a, b in zip(cpu_before, cpu_after, strict=True)],
                        }
                    )
            finally:
                theta0.unlink(missing_ok=True)
    return runs


def measure(
    workdir: Path,
    sizes_mb: Sequence[int] = DEFAULT_SIZES_MB,
    codecs: Sequence[str] = DEFAULT_CODECS,
    rounds: int = DEFAULT_ROUNDS,
    *,
    work_root: Path | None = None,
    handoff_dir: Path | None = DEFAULT_HANDOFF_DIR,
) -> list[Figure]:
    """``work_root``: where the workers' work dirs go (default ``workdir``); ``handoff_dir``: where
    each work dir's handoff/ folder goes, as a worker's ``job.handoff_dir`` (None: not offered)."""
    import torch.distributed as dist

    from tendril.core.codecs import CODECS
    from tendril_sdk.files import HANDOFF, UPDATES, memory_backed

    if rounds <= WARMUP:
        raise ValueError(f"sync rounds must be more than the {WARMUP} warm-up rounds, got {rounds}")
    unknown = [c for c in codecs if c not in CODECS]
    if unknown:
        raise ValueError(f"unknown codecs {unknown}; choose from {', '.join(CODECS)}")
    for mb in sizes_mb:
        tensor_counts(mb * MB)
    load_before = os.getloadavg()
    started = time.monotonic()
    state = workdir / "sync-ps-state"
    if work_root is None:
        work = workdir / "sync-work"
    else:
        work_root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="tendril-sync-work-", dir=work_root))
    # NOTE: each work dir as a worker makes it (tendril.job.workdir): updates/, and handoff/ linked
    # to a folder of its own on a file system held in memory where the worker offers one.
    offered = handoff_dir is not None and handoff_dir.is_dir() and memory_backed(handoff_dir)
    handoffs = Path(tempfile.mkdtemp(prefix="tendril-sync-handoff-", dir=handoff_dir)) if offered else None
    for rank in range(WORLD):
        (work / f"w{rank}" / UPDATES).mkdir(parents=True, exist_ok=True)
        if handoffs is not None:
            (handoffs / f"w{rank}").mkdir(mode=0o700)
            (work / f"w{rank}" / HANDOFF).symlink_to(handoffs / f"w{rank}", target_is_directory=True)
    config = workdir / "sync-ps-config.json"

    def start(ports: list[int]) -> subprocess.Popen[bytes]:
        config.write_text(
            json.dumps(
                {
                    "worker": {"id": "sync-bench", "state_dir": str(state)},
                    # NOTE: the data port too: its default (50056) lies in the kernel's ephemeral
                    # range, where any outgoing connection may hold it.
                    "paramserver": {"listen": f"127.0.0.1:{ports[0]}", "data_listen": f"127.0.0.1:{ports[1]}"},
                    "telemetry": {"log_level": "warning", "log_format": "json"},
                }
            )
        )
        return spawn_python(
            ["-m", "tendril.paramserver", "--config-json", str(config)], log=workdir / "sync-paramserver.log"
        )

    # NOTE: the store listens on a port the OS picks (no window in which another process could
    # take it); it goes away with the object, which the `finally` below drops.
    store = dist.TCPStore("127.0.0.1", 0, None, True, wait_for_workers=False, timeout=STORE_TIMEOUT)
    ps, (port, _) = spawn_on_free_ports(2, start, workdir / "sync-paramserver.log")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for rank in range(WORLD):
            workers.append(
                spawn_python(
                    [
                        "-m",
                        "bench.sync",
                        "worker",
                        f"--rank={rank}",
                        f"--store-port={store.port}",
                        f"--paramserver=127.0.0.1:{port}",
                        f"--ps-pid={ps.pid}",
                        f"--work={work / f'w{rank}'}",
                        f"--sizes-mb={','.join(str(mb) for mb in sizes_mb)}",
                        f"--codecs={','.join(codecs)}",
                        f"--rounds={rounds}",
                    ],
                    log=_worker_log(workdir, rank),
                    # NOTE: gloo binds to the address of the host name unless told an interface.
                    env={"GLOO_SOCKET_IFNAME": "lo"},
                )
            )
        try:
            runs = asyncio.run(_drive(f"127.0.0.1:{port}", store, workers, workdir, sizes_mb, codecs, rounds, ps.pid))
        except BaseException as exc:
            # NOTE: the traceback's frames hold the store; cleared, `del store` below closes its port now.
            traceback.clear_frames(exc.__traceback__)
            raise
        for proc in workers:  # they end by themselves once every run is done
            proc.wait(timeout=60)
    finally:
        for proc in workers:
            stop(proc)
        stop(ps)
        del store
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        if handoffs is not None:
            shutil.rmtree(handoffs, ignore_errors=True)
    section = {
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.monotonic() - started, 1),
        "work_dirs": str(work),
        # Δ and u go into files kept from round to round only there (tendril_sdk.files)
        "work_dirs_in_memory": memory_backed(work),
        "handoff_offered": str(handoff_dir) if offered else "",
    }
    return figures(runs, rounds, section)


# -- figures ------------------------------------------------------------------------------------


def _median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def _r(value: float) -> float:
    return round(value, 4)


def _gloo_repeats(runs: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Every measured gloo repeat of ``runs``: max over workers of (all_reduce + step), etc."""
    out = []
    for run in runs:
        workers = run["workers"]
        for k in range(WARMUP, len(workers[0]["gloo"])):
            reps = [w["gloo"][k] for w in workers]
            out.append(
                {
                    "seconds": max(r["end"] - r["start"] for r in reps),
                    "all_reduce": max(r["reduced"] - r["start"] for r in reps),
                    "span": max(r["end"] for r in reps) - min(r["start"] for r in reps),
                    "skew": max(r["start"] for r in reps) - min(r["start"] for r in reps),
                }
            )
    return out


def _ready_times(events: list[tuple[float, int, int]]) -> tuple[dict[int, float], dict[int, float]]:
    """When each round closed (state CLOSED) and when its update was ready (a later round seen)."""
    closed: dict[int, float] = {}
    ready: dict[int, float] = {}
    closed_state = 2  # RoundState.ROUND_STATE_CLOSED
    for t, rnd, state in events:
        if state == closed_state:
            closed.setdefault(rnd, t)
        for earlier in range(rnd):
            ready.setdefault(earlier, t)
    return closed, ready


def _tendril_rounds(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Per measured round: sync seconds, PS close seconds, and every worker's parts."""
    workers = run["workers"]
    closed, ready = _ready_times(run["events"])
    out = []
    for r in range(WARMUP, len(workers[0]["tendril"])):
        stamps = [w["tendril"][r] for w in workers]
        begin = min(s["start"] for s in stamps)
        parts = []
        for s in stamps:
            at = ready.get(r)
            part = {
                "write": s["written"] - s["start"],
                "push": s["pushed"] - s["written"],
                "load": s["loaded"] - s["pulled"],
                "apply": s["end"] - s["loaded"],
            }
            if at is None:  # no WatchRound stamp: pull holds the wait too
                part["wait"], part["pull"] = None, s["pulled"] - s["pull_start"]
            else:
                part["wait"] = max(0.0, at - s["pull_start"])
                part["pull"] = s["pulled"] - max(at, s["pull_start"])
            parts.append(part)
        out.append(
            {
                "seconds": max(s["end"] for s in stamps) - begin,
                "per_process": max(s["end"] - s["start"] for s in stamps),
                "skew": max(s["start"] for s in stamps) - begin,
                "last_push_done": max(s["pushed"] for s in stamps) - begin,
                "ps_close": (ready[r] - closed[r]) if r in ready and r in closed else None,
                "parts": parts,
                "window": (begin, max(s["end"] for s in stamps)),
                "bytes_sent": [s["bytes_sent"] for s in stamps],
                "bytes_received": [s["bytes_received"] for s in stamps],
            }
        )
    return out


def _warmup_seconds(run: dict[str, Any]) -> list[float]:
    """Each warm-up round's seconds, from the first start to the last end."""
    count = min(WARMUP, len(run["workers"][0]["tendril"]))
    rounds = [[w["tendril"][r] for w in run["workers"]] for r in range(count)]
    return [_r(max(s["end"] for s in stamps) - min(s["start"] for s in stamps)) for stamps in rounds]


def _part_medians(rounds: list[dict[str, Any]], worker: int | None) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for part in PARTS:
        values = [
            p[part]
            for rnd in rounds
            for i, p in enumerate(rnd["parts"])
            if (worker is None or i == worker) and p[part] is not None
        ]
        out[part] = _r(_median(values)) if values else None
    return out


def _where_note(run: dict[str, Any], section: dict[str, Any]) -> str:
    """Where the run's Δ and u files went, for the note."""
    folders = {w.get("handoff_folder", "updates") for w in run["workers"]}
    if section.get("work_dirs_in_memory"):
        return "; work dirs in memory: Δ and u in kept files"
    if folders == {"handoff"}:
        return f"; Δ and u in kept files in handoff/ ({section.get('handoff_offered')}), work dirs on disk"
    return "; Δ and u in new files in updates/ (work dirs on disk" + (
        ", handoff/ offered but too small)" if section.get("handoff_offered") else ", no handoff/ offered)"
    )


def figures(runs: list[dict[str, Any]], rounds: int, section: dict[str, Any]) -> list[Figure]:
    out = []
    for mb in dict.fromkeys(run["mb"] for run in runs):
        of_size = [run for run in runs if run["mb"] == mb]
        gloo = _gloo_repeats(of_size)
        baseline = _median(g["seconds"] for g in gloo)
        all_reduce = _median(g["all_reduce"] for g in gloo)
        for run in of_size:
            codec = run["codec"]
            measured = _tendril_rounds(run)
            value = _median(m["seconds"] for m in measured)
            ratio = value / baseline
            parts = _part_medians(measured, None)
            closes = [m["ps_close"] for m in measured if m["ps_close"] is not None]
            ps_user, ps_sys = run["ps_cpu_seconds"]
            shown = ", ".join(f"{PART_NAMES[p]} {parts[p]:.3g} s" for p in PARTS if parts[p] is not None) + (
                "" if parts["wait"] is not None else " (pull includes the wait for close)"
            )
            why = GLOO_CODECS.get(codec, f"gloo has no {codec} codec")
            codec_note = "" if codec == "fp32" else f"; held against the fp32 all_reduce: {why}"
            out.append(
                Figure(
                    f"round sync {mb} MB {codec}, {WORLD} workers",
                    round(value, 3),
                    "s",
                    baseline=round(baseline, 3),
                    baseline_name=BASELINE_NAME,
                    target=f"≤ {TARGET_RATIO:g}× baseline",
                    ok=value <= TARGET_RATIO * baseline,
                    note=(
                        f"{ratio:.1f}× baseline (gloo all_reduce alone {all_reduce:.3g} s); "
                        f"per-worker medians: {shown}"
                        + (f" (PS closes the round in {_median(closes):.3g} s)" if closes else "")
                        + f"; PS CPU {ps_user / rounds:.2g} + {ps_sys / rounds:.2g} s (user + system) per round"
                        + f"; median of {len(measured)} rounds after {WARMUP} warm-up{codec_note}"
                        + _where_note(run, section)
                    ),
                    details={
                        "payload_bytes": mb * MB,
                        "codec": codec,
                        "workers": WORLD,
                        "ratio": round(ratio, 3),
                        "rounds": rounds,
                        "warmup_rounds": WARMUP,
                        "warmup_sync_seconds_rounds": _warmup_seconds(run),
                        "sync_seconds_rounds": [_r(m["seconds"]) for m in measured],
                        # (first start, last end) of each round on CLOCK_MONOTONIC: lines up with
                        # `perf record -k CLOCK_MONOTONIC` samples of the same run.
                        "round_windows_monotonic": [m["window"] for m in measured],
                        # As the baseline is defined (max over workers of each one's own time),
                        # which leaves out how much later than the first one a worker left the barrier.
                        "sync_seconds_per_process_max_rounds": [_r(m["per_process"]) for m in measured],
                        "barrier_skew_seconds_rounds": [_r(m["skew"]) for m in measured],
                        "last_push_done_seconds_rounds": [_r(m["last_push_done"]) for m in measured],
                        "ps_close_seconds_rounds": [_r(c) for c in closes],
                        # Every round's (warm-up included), with the checkpoints written after them.
                        "ps_cpu_seconds_per_round": {"user": _r(ps_user / rounds), "system": _r(ps_sys / rounds)},
                        "parts_median_seconds": parts,
                        "parts_median_seconds_per_worker": {f"w{i}": _part_medians(measured, i) for i in range(WORLD)},
                        "parts_seconds_rounds": [
                            [{k: (None if v is None else _r(v)) for k, v in p.items()} for p in m["parts"]]
                            for m in measured
                        ],
                        "bytes_sent_per_worker": measured[-1]["bytes_sent"],
                        "bytes_received_per_worker": measured[-1]["bytes_received"],
                        "delta_writer": "tendril_diloco.params.HandOff (the executor's own; kept files in memory only)",
                        "handoff_folder_per_worker": {
                            f"w{i}": w.get("handoff_folder", "updates") for i, w in enumerate(run["workers"])
                        },
                        "update_receiver": "tensorstream.pull_update into tendril_sdk.files.Reusable (reuse_files)",
                        "baseline": {
                            "codec": "fp32",
                            "seconds_median": _r(baseline),
                            "all_reduce_seconds_median": _r(all_reduce),
                            "seconds_repeats": [_r(g["seconds"]) for g in gloo],
                            "all_reduce_seconds_repeats": [_r(g["all_reduce"]) for g in gloo],
                            "span_seconds_repeats": [_r(g["span"]) for g in gloo],
                            "barrier_skew_seconds_repeats": [_r(g["skew"]) for g in gloo],
                            "repeats_of_this_run": [_r(g["seconds"]) for g in _gloo_repeats([run])],
                        },
                        "quiet_before_repeats": run["workers"][0]["quiet_before_repeats"],
                        "load_average_before": run["load_average_before"],
                        "load_average_after": run["load_average_after"],
                        "section": section,
                    },
                )
            )
    return out


def main(argv: list[str]) -> None:
    if not argv or argv[0] != "worker":
        raise SystemExit("usage: python -m bench.sync worker --rank R --store-port P ... (started by measure())")
    worker_main(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
