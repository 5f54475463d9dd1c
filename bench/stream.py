"""Tensor-stream throughput over a real grpc.aio server on loopback vs a raw socket.

Both move the same 1 GiB payload (a SafeTensors file) from an mmap of the file in one process
into a preallocated, already touched buffer in another:

* tensor stream: the ``tensorstream`` primitives — header, 1 MiB chunks cut lazily from the
  mmap, receiver writing at offsets and hashing, sha256 verified at the end — through a
  grpc.aio server built with ``ServiceServer`` (ParameterServerService.PushParameters shape);
* baseline: ``socket.sendall`` of the mmap / ``recv_into`` the buffer, nothing else.

Server processes run as ``python -m bench.stream serve-grpc|serve-raw PORT SIZE``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import GIB, MIB, Figure, free_port, spawn_python, stop, wait_for_port, write_pattern_file

REPEATS = 3


def make_payload(path: Path, size: int) -> int:
    """A SafeTensors file of about ``size`` bytes (one F32 tensor); returns its exact size."""
    from tendril.services.core import tensorfile

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

    from tendril.paramserver.v1 import paramserver_pb2
    from tendril.services.core.server import BOUNDED_STREAM_WINDOW_OPTIONS, Binding, ServiceServer
    from tendril.services.core.streaming import BufferDestination, Receiver, info_from_header, parse_frame
    from tendril.services.paramserver.servicer import SERVICE_NAME

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


def serve_raw(port: int, size: int) -> None:
    buffer = touched_buffer(size)
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        while True:
            conn, _ = listener.accept()
            with conn:
                header = conn.recv(8, socket.MSG_WAITALL)
                total = int.from_bytes(header, "little")
                got = 0
                while got < total:
                    n = conn.recv_into(buffer[got:total])
                    if not n:
                        break
                    got += n
                conn.sendall(b"k")


# -- clients (this process) -----------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def send_grpc(port: int, path: Path) -> float:
    from tendril.paramserver.v1 import paramserver_pb2
    from tendril.services.core import tensorfile
    from tendril.services.core.channel import open_channel
    from tendril.services.core.streaming import StreamInfo, file_frames, header_frame, header_message
    from tendril.services.core.tensorstream import push_call

    layout = tensorfile.read_layout(path)
    sha = tensorfile.sha256_file(path).hexdigest()  # payload preparation, not part of the transfer
    info = StreamInfo(uuid.uuid4().hex, "bench", 0, "bench", 1.0, layout, sha)
    async with open_channel(f"127.0.0.1:{port}") as channel:
        call = push_call(channel, "PushParameters", paramserver_pb2.PushParametersResponse)

        async def requests() -> Any:
            yield header_frame(header_message(info))
            for frame in file_frames(path):
                yield frame

        start = time.perf_counter()
        reply = await call(requests())
        seconds = time.perf_counter() - start
    assert reply.accepted
    return seconds


def send_raw(port: int, path: Path) -> float:
    from tendril.services.core.streaming import mapped

    with mapped(path) as view, socket.create_connection(("127.0.0.1", port)) as conn:
        start = time.perf_counter()
        conn.sendall(len(view).to_bytes(8, "little"))
        conn.sendall(view)
        assert conn.recv(1) == b"k"
        return time.perf_counter() - start


def measure(workdir: Path, size: int = GIB) -> Figure:
    path = workdir / "stream-payload.safetensors"
    total = make_payload(path, size)
    results: dict[str, list[float]] = {"grpc": [], "raw": []}
    cpu: dict[str, list[tuple[float, float]]] = {"grpc": [], "raw": []}  # (sender, receiver) CPU s per GiB
    try:
        for kind in ("raw", "grpc"):
            port = free_port()
            server = spawn_python(
                ["-m", "bench.stream", f"serve-{kind}", str(port), str(total)], log=workdir / f"stream-{kind}.log"
            )
            try:
                wait_for_port(port, server)
                for _ in range(REPEATS):
                    server_cpu, client_cpu = _cpu_seconds(server.pid), time.process_time()
                    seconds = asyncio.run(send_grpc(port, path)) if kind == "grpc" else send_raw(port, path)
                    results[kind].append(total / seconds / 1e9)
                    per_gib = GIB / total
                    cpu[kind].append(
                        (
                            round((time.process_time() - client_cpu) * per_gib, 3),
                            round((_cpu_seconds(server.pid) - server_cpu) * per_gib, 3),
                        )
                    )
            finally:
                stop(server)
    finally:
        path.unlink(missing_ok=True)
    grpc_gbps, raw_gbps = max(results["grpc"]), max(results["raw"])
    ratio = grpc_gbps / raw_gbps
    return Figure(
        "tensor stream 1 GiB, grpc.aio loopback",
        round(grpc_gbps, 3),
        "GB/s",
        baseline=round(raw_gbps, 3),
        baseline_name="raw socket sendall/recv_into",
        target="≥ 0.8× baseline",
        ok=ratio >= 0.8,
        note=f"{ratio:.2f}× baseline; sha256 verified by the receiver; best of {REPEATS}",
        details={
            "bytes": total,
            "grpc_gbps_runs": [round(x, 3) for x in results["grpc"]],
            "raw_gbps_runs": [round(x, 3) for x in results["raw"]],
            "grpc_gbps_median": round(statistics.median(results["grpc"]), 3),
            "ratio": round(ratio, 3),
            # Load-independent view: CPU seconds per GiB (sender incl. its sha256 of the payload
            # for grpc, receiver incl. hashing); wall-clock figures depend on what else runs.
            "cpu_seconds_per_gib_sender_receiver": cpu,
        },
    )


def main(argv: list[str]) -> None:
    kind, port, size = argv[0], int(argv[1]), int(argv[2])
    if kind == "serve-grpc":
        asyncio.run(serve_grpc(port, size))
    elif kind == "serve-raw":
        serve_raw(port, size)
    else:
        raise SystemExit(f"unknown mode {kind}")


if __name__ == "__main__":
    if os.environ.get("GLIBC_TUNABLES") is None:
        print("warning: GLIBC_TUNABLES is not set", file=sys.stderr)
    main(sys.argv[1:])
