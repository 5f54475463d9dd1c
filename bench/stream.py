"""Tensor-stream throughput over the real client and server code on loopback vs a raw socket.

All of them move the same 1 GiB payload (a SafeTensors file) from this process into a
preallocated, already touched buffer in a server process started with the data-plane
environment (GLIBC_TUNABLES; every process's own value is checked and reported):

* tensor stream: ``tensorstream._push_stream`` (what ``push_update``/``push_parameters`` run
  once the payload is prepared) against a grpc.aio server built with ``ServiceServer`` whose
  PushParameters handler is the parameter server's ``receive_push`` with a data port
  (:mod:`tendril.core.dataplane`): header and verdict in the call, the bytes ``sendfile``'d from
  the file and received with ``recv_into`` straight into the buffer, XXH3-128 verified;
* in the call: the same client and server asked for no data plane (the fallback path, and what
  clients that do not ask get): 1 MiB chunks in gRPC messages;
* baseline: ``socket.sendall`` of the mmap / ``recv_into`` the buffer, nothing else;
* reference: the same raw socket, plus the receiver's XXH3-128 of the payload (on a thread,
  overlapping the receive) checked against the sender's: the floor any transport with the
  stream's integrity guarantee pays here.

Runs are interleaved (raw, raw + xxh3, stream, in-call, raw, ...) so that load from other
processes on a shared machine hits every kind alike; the figure is the best of the runs. The
sender's digest (stream header) is computed once before the runs, as a prepared payload's is;
the raw connections are set up outside the timed part, the stream's call and data connection
inside it. CPU seconds per GiB are counted over the transfer only, for the sender (this
process) and the receiver (the server process).

Server processes run as ``python -m bench.stream serve-stream|serve-raw|serve-raw-xxh3 PORT SIZE``.
"""

from __future__ import annotations

import asyncio
import dataclasses
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


async def serve_stream(port: int, size: int) -> None:
    """PushParameters as the parameter server receives it (``receive_push``: data plane or chunks),
    into memory; the data port is the gRPC port + 1."""
    import grpc

    from tendril.core.dataplane import DataPlane
    from tendril.core.server import BOUNDED_STREAM_WINDOW_OPTIONS, Binding, ServiceServer
    from tendril.core.streaming import BufferDestination, Receiver, parse_frame
    from tendril.paramserver.servicer import SERVICE_NAME, _read_header, receive_push
    from tendril_proto.paramserver.v1 import paramserver_pb2

    buffer = touched_buffer(size)
    plane = DataPlane(f"127.0.0.1:{port + 1}")

    async def push_parameters(request_iterator: Any, context: Any) -> Any:
        requests = aiter(request_iterator)
        info = await _read_header(requests)
        receiver = Receiver(info, BufferDestination(buffer[: info.total_bytes]))
        await receive_push(plane, context, info, receiver, requests)
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
    await plane.start()
    await server.start()
    await server.wait()


def _receive_raw(conn: socket.socket, buffer: memoryview, verify: bool) -> bytes:
    """Receive ``8-byte length + 16-byte xxh3-128 + payload`` into ``buffer``; b"k", or b"x" when damaged.

    With ``verify``, a thread hashes every 4 MiB as it lands while this one receives the rest.
    """
    import xxhash

    header = conn.recv(24, socket.MSG_WAITALL)
    total, want = int.from_bytes(header[:8], "little"), header[8:]
    digest = xxhash.xxh3_128()
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


async def send_stream(port: int, path: Path, digest: Any, server_pid: int, *, plane: bool) -> Run:
    """One push through ``tensorstream._push_stream``, over the data plane or (``plane`` False) in the call."""
    from tendril.core import tensorfile, tensorstream
    from tendril.core.channel import open_channel
    from tendril.core.streaming import StreamInfo
    from tendril_proto.paramserver.v1 import paramserver_pb2

    info = StreamInfo(uuid.uuid4().hex, "bench", 0, "bench", 1.0, tensorfile.read_layout(path), digest)
    async with open_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)  # connected before the clock starts, as raw is
        call = tensorstream.push_call(channel, "PushParameters", paramserver_pb2.PushParametersResponse)
        server_cpu, client_cpu, start = _cpu_seconds(server_pid), time.process_time(), time.perf_counter()
        reply, _ = await tensorstream._push_stream(
            call, info, path, resumable=False, what="bench push", host="127.0.0.1" if plane else None
        )
        seconds = time.perf_counter() - start
        run = Run(seconds, time.process_time() - client_cpu, _cpu_seconds(server_pid) - server_cpu)
    assert reply.accepted
    return run


def send_raw(port: int, path: Path, digest: Any, server_pid: int) -> Run:
    from tendril.core.streaming import mapped

    with mapped(path) as view, socket.create_connection(("127.0.0.1", port)) as conn:
        server_cpu, client_cpu, start = _cpu_seconds(server_pid), time.process_time(), time.perf_counter()
        conn.sendall(len(view).to_bytes(8, "little") + bytes.fromhex(digest.hex))
        conn.sendall(view)
        answer = conn.recv(1)
        seconds = time.perf_counter() - start
        run = Run(seconds, time.process_time() - client_cpu, _cpu_seconds(server_pid) - server_cpu)
    if answer != b"k":
        raise RuntimeError(f"the raw receiver answered {answer!r}: the payload arrived damaged or short")
    return run


# kind -> server mode; "stream" and "in-call" share one server (ports: gRPC, gRPC + 1 for data).
KINDS = {"raw": "serve-raw", "raw-xxh3": "serve-raw-xxh3", "stream": "serve-stream", "in-call": ""}


def _free_pair() -> int:
    """A port P with P and P + 1 free a moment ago (the stream server's gRPC and data ports)."""
    for _ in range(100):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("found no two free consecutive ports")


def measure(workdir: Path, size: int = GIB) -> Figure:
    from tendril.core.streaming import DEFAULT_DIGEST, Digest, digest_file

    path = workdir / "stream-payload.safetensors"
    total = make_payload(path, size)
    # payload preparation, not part of the transfer
    digest = Digest(DEFAULT_DIGEST, digest_file(path, DEFAULT_DIGEST).hexdigest())
    runs: dict[str, list[Run]] = {kind: [] for kind in KINDS}
    servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    try:
        for kind, mode in KINDS.items():
            if not mode:
                continue
            port = _free_pair() if mode == "serve-stream" else free_port()
            servers[kind] = (
                port,
                spawn_python(["-m", "bench.stream", mode, str(port), str(total)], log=workdir / f"stream-{kind}.log"),
            )
        servers["in-call"] = servers["stream"]
        for port, server in servers.values():
            wait_for_port(port, server)
        wait_for_port(servers["stream"][0] + 1, servers["stream"][1])
        logs = {kind: workdir / f"stream-{kind}.log" for kind, mode in KINDS.items() if mode}
        tunables = {kind: _has_tunables(_reported_tunables(log)) for kind, log in logs.items()}
        tunables["sender"] = _has_tunables(os.environ.get("GLIBC_TUNABLES", ""))
        for _ in range(REPEATS):
            for kind, (port, server) in servers.items():  # interleaved: load changes hit every kind alike
                if kind in ("stream", "in-call"):
                    push = send_stream(port, path, digest, server.pid, plane=kind == "stream")
                    runs[kind].append(asyncio.run(push))
                else:
                    runs[kind].append(send_raw(port, path, digest, server.pid))
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
    ratio = best["stream"] / best["raw"]
    ratio_xxh3 = best["stream"] / best["raw-xxh3"]
    return Figure(
        f"tensor stream {'1 GiB' if size == GIB else f'{size / MIB:g} MiB'}, loopback (gRPC call + data plane)",
        round(best["stream"], 3),
        "GB/s",
        baseline=round(best["raw"], 3),
        baseline_name="raw socket sendall/recv_into",
        target="≥ 0.8× baseline",
        ok=ratio >= 0.8,
        note=(
            f"{ratio:.2f}× baseline, {ratio_xxh3:.2f}× raw + xxh3 ({best['raw-xxh3']:.2f} GB/s); "
            f"in the call (no data plane) {best['in-call']:.2f} GB/s; xxh3-128 verified by the receiver; "
            f"best of {REPEATS}, interleaved"
        ),
        details={
            "bytes": total,
            **{f"{kind.replace('-', '_')}_gbps_runs": [round(x, 3) for x in values] for kind, values in gbps.items()},
            "stream_gbps_median": round(statistics.median(gbps["stream"]), 3),
            "raw_xxh3_gbps": round(best["raw-xxh3"], 3),
            "in_call_gbps": round(best["in-call"], 3),
            "ratio": round(ratio, 3),
            "ratio_to_raw_xxh3": round(ratio_xxh3, 3),
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
    if kind == "serve-stream":
        asyncio.run(serve_stream(port, size))
    elif kind in ("serve-raw", "serve-raw-xxh3"):
        serve_raw(port, size, verify=kind == "serve-raw-xxh3")
    else:
        raise SystemExit(f"unknown mode {kind}")


if __name__ == "__main__":
    if os.environ.get("GLIBC_TUNABLES") is None:
        print("warning: GLIBC_TUNABLES is not set", file=sys.stderr)
    main(sys.argv[1:])
