"""Tensor-stream throughput over a real grpc.aio server on loopback vs a raw socket.

All of them move the same 1 GiB payload (a SafeTensors file) from an mmap of the file in this
process into a preallocated, already touched buffer in a server process started with the
data-plane environment (GLIBC_TUNABLES; every process's own value is checked and reported):

* tensor stream: the ``tensorstream`` primitives — header, 1 MiB chunks cut lazily from the
  mmap, receiver writing at offsets and hashing, sha256 verified at the end — through a
  grpc.aio server built with ``ServiceServer`` (ParameterServerService.PushParameters shape);
* baseline: ``socket.sendall`` of the mmap / ``recv_into`` the buffer, nothing else;
* reference: the same raw socket, plus the receiver's sha256 of the payload (on a thread,
  overlapping the receive) checked against the sender's: the floor any transport with the
  stream's integrity guarantee pays here.

Runs are interleaved (raw, raw + sha256, grpc, raw, ...) so that load from other processes on
a shared machine hits every kind alike. The sender's sha256 (stream header) is computed once
before the runs, as a prepared payload's is; connections are set up outside the timed part.
CPU seconds per GiB are counted over the transfer only, for the sender (this process) and
the receiver (the server process).

Server processes run as ``python -m bench.stream serve-grpc|serve-raw|serve-raw-sha256 PORT SIZE``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import GIB, MIB, Figure, free_port, spawn_python, stop, wait_for_port, write_pattern_file

REPEATS = 5


def make_payload(path: Path, size: int) -> int:
    """A SafeTensors file of about ``size`` bytes (one F32 tensor); returns its exact size."""
    from tendril.core import tensorfile

    layout, header = tensorfile.plan_layout([("x", (size // 4,))], "fp32")
    data = path.with_suffix(".data")
    write_pattern_file(data, layout.data_size)
    with open(path, "wb") as out, open(data, "rb") as src:
        out.write(header)
        while piece := src.read(64 * MIB):
            out.write(piece)
    data.unlink()
    return layout.total_bytes


def touched_buffer(size: int) -> memoryview:
    """A preallocated buffer whose pages are all faulted in already."""
    import numpy as np

    array = np.empty(size, dtype=np.uint8)
    array[::4096] = 1
    return memoryview(array.data).cast("B")


# -- servers (separate processes) ------------------------------------------------------------------


async def serve_grpc(port: int, size: int) -> None:
    import grpc

    from tendril.core.server import BOUNDED_STREAM_WINDOW_OPTIONS, Binding, ServiceServer
    from tendril.core.streaming import BufferDestination, Receiver, info_from_header, parse_frame
    from tendril.paramserver.servicer import SERVICE_NAME
    from tendril_proto.paramserver.v1 import paramserver_pb2

    buffer = touched_buffer(size)

    async def push_parameters(request_iterator: Any, context: Any) -> Any:
        """PushParameters as the ParameterServer receives it, into memory instead of a spool file."""
        requests = aiter(request_iterator)
        first = await anext(requests)
        receiver = Receiver(info_from_header(first.header), BufferDestination(buffer[:size]))
        async for frame in requests:
            await receiver.feed_async(frame.offset, frame.data)
        await receiver.settle()
        receiver.verify()
        return paramserver_pb2.PushParametersResponse(accepted=True)

    def add(_: Any, server: grpc.aio.Server) -> None:
        handler = grpc.stream_unary_rpc_method_handler(
            push_parameters,
            request_deserializer=parse_frame,
            response_serializer=paramserver_pb2.PushParametersResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, {"PushParameters": handler}),)
        )

    server = ServiceServer(
        f"127.0.0.1:{port}",
        [Binding(SERVICE_NAME, add, None)],
        config_key="bench",
        options=BOUNDED_STREAM_WINDOW_OPTIONS,  # as the ParameterServer receives streams
    )
    await server.start()
    await server.wait()


def _receive_raw(conn: socket.socket, buffer: memoryview, verify: bool) -> bytes:
    """Receive ``8-byte length + 32-byte sha256 + payload`` into ``buffer``; b"k", or b"x" when damaged.

    With ``verify``, a thread hashes every 4 MiB as it lands while this one receives the rest.
    """
    header = conn.recv(40, socket.MSG_WAITALL)
    total, want = int.from_bytes(header[:8], "little"), header[8:]
    digest = hashlib.sha256()
    ranges: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()

    def hash_ranges() -> None:
        while (piece := ranges.get()) is not None:
            digest.update(buffer[piece[0] : piece[1]])

    hasher = threading.Thread(target=hash_ranges)
    if verify:
        hasher.start()
    got = handed = 0
    while got < total:
        n = conn.recv_into(buffer[got:total])
        if not n:
            break
        got += n
        if verify and (got - handed >= 4 * MIB or got == total):
            ranges.put((handed, got))
            handed = got
    if not verify:
        return b"k"
    ranges.put(None)
    hasher.join()
    return b"k" if got == total and digest.digest() == want else b"x"


def serve_raw(port: int, size: int, *, verify: bool = False) -> None:
    buffer = touched_buffer(size)
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        while True:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(_receive_raw(conn, buffer, verify))


# -- clients (this process) -----------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _has_tunables(environment: str) -> bool:
    """Whether a process's GLIBC_TUNABLES (as its Python sees it) is the data-plane one.

    # NOTE: not read from /proc/PID/environ: glibc cuts the original string after the first
    # tunable while parsing it (both still apply), so that file shows only the first one.
    """
    from tendril.core.process import GLIBC_TUNABLES

    return environment == GLIBC_TUNABLES


def _reported_tunables(log: Path) -> str:
    """The GLIBC_TUNABLES a server printed when it started (see main())."""
    for line in log.read_text().splitlines():
        if line.startswith(TUNABLES_LINE):
            return line[len(TUNABLES_LINE) :]
    return ""


@dataclasses.dataclass
class Run:
    """One timed transfer: wall seconds, and CPU seconds of the sender and the receiver."""

    seconds: float
    sender_cpu: float
    receiver_cpu: float


async def send_grpc(port: int, path: Path, sha: str, server_pid: int) -> Run:
    from tendril.core import tensorfile
    from tendril.core.channel import open_channel
    from tendril.core.streaming import StreamInfo, file_frames, header_frame, header_message
    from tendril.core.tensorstream import push_call
    from tendril_proto.paramserver.v1 import paramserver_pb2

    info = StreamInfo(uuid.uuid4().hex, "bench", 0, "bench", 1.0, tensorfile.read_layout(path), sha)
    async with open_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)  # connected before the clock starts, as raw is
        call = push_call(channel, "PushParameters", paramserver_pb2.PushParametersResponse)

        async def requests() -> Any:
            yield header_frame(header_message(info))
            for frame in file_frames(path):
                yield frame

        server_cpu, client_cpu, start = _cpu_seconds(server_pid), time.process_time(), time.perf_counter()
        reply = await call(requests())
        seconds = time.perf_counter() - start
        run = Run(seconds, time.process_time() - client_cpu, _cpu_seconds(server_pid) - server_cpu)
    assert reply.accepted
    return run


def send_raw(port: int, path: Path, sha: str, server_pid: int) -> Run:
    from tendril.core.streaming import mapped

    with mapped(path) as view, socket.create_connection(("127.0.0.1", port)) as conn:
        server_cpu, client_cpu, start = _cpu_seconds(server_pid), time.process_time(), time.perf_counter()
        conn.sendall(len(view).to_bytes(8, "little") + bytes.fromhex(sha))
        conn.sendall(view)
        answer = conn.recv(1)
        seconds = time.perf_counter() - start
        run = Run(seconds, time.process_time() - client_cpu, _cpu_seconds(server_pid) - server_cpu)
    if answer != b"k":
        raise RuntimeError(f"the raw receiver answered {answer!r}: the payload arrived damaged or short")
    return run


KINDS = {"raw": "serve-raw", "raw-sha256": "serve-raw-sha256", "grpc": "serve-grpc"}


def measure(workdir: Path, size: int = GIB) -> Figure:
    from tendril.core import tensorfile

    path = workdir / "stream-payload.safetensors"
    total = make_payload(path, size)
    sha = tensorfile.sha256_file(path).hexdigest()  # payload preparation, not part of the transfer
    runs: dict[str, list[Run]] = {kind: [] for kind in KINDS}
    servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    try:
        for kind, mode in KINDS.items():
            port = free_port()
            servers[kind] = (
                port,
                spawn_python(["-m", "bench.stream", mode, str(port), str(total)], log=workdir / f"stream-{kind}.log"),
            )
        for port, server in servers.values():
            wait_for_port(port, server)
        tunables = {kind: _has_tunables(_reported_tunables(workdir / f"stream-{kind}.log")) for kind in KINDS}
        tunables["sender"] = _has_tunables(os.environ.get("GLIBC_TUNABLES", ""))
        for _ in range(REPEATS):
            for kind, (port, server) in servers.items():  # interleaved: load changes hit every kind alike
                if kind == "grpc":
                    runs[kind].append(asyncio.run(send_grpc(port, path, sha, server.pid)))
                else:
                    runs[kind].append(send_raw(port, path, sha, server.pid))
    finally:
        for _, server in servers.values():
            stop(server)
        path.unlink(missing_ok=True)
    gbps = {kind: [total / r.seconds / 1e9 for r in kind_runs] for kind, kind_runs in runs.items()}
    best = {kind: max(values) for kind, values in gbps.items()}
    per_gib = GIB / total
    cpu = {
        kind: {
            "sender": round(statistics.median(r.sender_cpu for r in kind_runs) * per_gib, 3),
            "receiver": round(statistics.median(r.receiver_cpu for r in kind_runs) * per_gib, 3),
        }
        for kind, kind_runs in runs.items()
    }
    ratio = best["grpc"] / best["raw"]
    ratio_sha = best["grpc"] / best["raw-sha256"]
    return Figure(
        f"tensor stream {'1 GiB' if size == GIB else f'{size / MIB:g} MiB'}, grpc.aio loopback",
        round(best["grpc"], 3),
        "GB/s",
        baseline=round(best["raw"], 3),
        baseline_name="raw socket sendall/recv_into",
        target="≥ 0.8× baseline",
        ok=ratio >= 0.8,
        note=(
            f"{ratio:.2f}× baseline, {ratio_sha:.2f}× raw + sha256 ({best['raw-sha256']:.2f} GB/s); "
            f"sha256 verified by the receiver; best of {REPEATS}, interleaved"
        ),
        details={
            "bytes": total,
            **{f"{kind.replace('-', '_')}_gbps_runs": [round(x, 3) for x in values] for kind, values in gbps.items()},
            "grpc_gbps_median": round(statistics.median(gbps["grpc"]), 3),
            "raw_sha256_gbps": round(best["raw-sha256"], 3),
            "ratio": round(ratio, 3),
            "ratio_to_raw_sha256": round(ratio_sha, 3),
            # Less load-dependent than wall clock: CPU seconds per GiB over the transfer (all
            # threads of each process, median of the runs); and the GB/s that CPU time allows
            # when both processes share this machine's cores with nothing else.
            "cpu_seconds_per_gib": cpu,
            "cpu_bound_gbps": {
                kind: round(GIB / 1e9 * (os.cpu_count() or 1) / (c["sender"] + c["receiver"]), 3)
                for kind, c in cpu.items()
            },
            "glibc_tunables_in_environment": tunables,
        },
    )


TUNABLES_LINE = "serving with GLIBC_TUNABLES="


def main(argv: list[str]) -> None:
    kind, port, size = argv[0], int(argv[1]), int(argv[2])
    print(TUNABLES_LINE + os.environ.get("GLIBC_TUNABLES", ""), flush=True)
    if kind == "serve-grpc":
        asyncio.run(serve_grpc(port, size))
    elif kind in ("serve-raw", "serve-raw-sha256"):
        serve_raw(port, size, verify=kind == "serve-raw-sha256")
    else:
        raise SystemExit(f"unknown mode {kind}")


if __name__ == "__main__":
    if os.environ.get("GLIBC_TUNABLES") is None:
        print("warning: GLIBC_TUNABLES is not set", file=sys.stderr)
    main(sys.argv[1:])
