"""The lab's latency: a delaying TCP relay, one per host (this kernel has no ``netem``).

With ``latency_ms`` set, the lab adds to each host's namespace an iptables rule that redirects
every TCP connection the host opens to another lab host to this relay (``nat OUTPUT ...
REDIRECT``); the relay finds where the connection was going (``SO_ORIGINAL_DST``), waits one
round trip (2 × the delay, the handshake's cost), connects there itself — its own sockets carry
``MARK``, which the rule leaves alone — and forwards the bytes of both directions, each held
back by the delay. So every connection between two hosts gains 2 × ``latency_ms`` of round-trip
time, whichever host opened it; the bytes are untouched (TLS passes through, the dialled name
is the peer's own) and the tbf-shaped links still set the rate.

``python -m tendril.lab.relay --port PORT --delay-ms D`` runs it (the lab starts it inside a
host's namespace).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
import sys

MARK = 0x7E1
SO_ORIGINAL_DST = 80
CHUNK = 64 * 1024
# NOTE: bytes held back per direction of one connection: the relay's window. 16 MiB covers
# 1 Gbit/s × 100 ms of delay, so the relay never limits the rate of a link the lab shapes.
QUEUED_CHUNKS = 256


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """Where a redirected connection was going (IPv4)."""
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, packed = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(packed), int(port)


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, window: int = 0) -> None:
    """Copy ``reader`` to ``writer``, each chunk written ``delay`` seconds after it was read;
    at most ``window`` bytes held back at once (0: QUEUED_CHUNKS chunks)."""
    loop = asyncio.get_running_loop()
    chunk = min(CHUNK, window) if window else CHUNK
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(
        max(1, window // chunk) if window else QUEUED_CHUNKS
    )

    async def take() -> None:
        try:
            while data := await reader.read(chunk):
                await queue.put((loop.time() + delay, data))
        finally:
            await queue.put(None)

    taker = asyncio.create_task(take())
    try:
        while (item := await queue.get()) is not None:
            due, data = item
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    finally:
        taker.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await taker


async def _serve(delay: float, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, window: int = 0) -> None:
    sock = writer.get_extra_info("socket")
    upstream: asyncio.StreamWriter | None = None
    try:
        host, port = original_destination(sock)
        local = sock.getsockname()
        if (host, port) == (local[0], local[1]):  # dialled directly, not redirected: nowhere to go
            return
        await asyncio.sleep(2 * delay)
        out = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        out.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
        out.setblocking(False)
        await asyncio.get_running_loop().sock_connect(out, (host, port))
        up_reader, upstream = await asyncio.open_connection(sock=out)
        await asyncio.gather(_forward(reader, upstream, delay, window), _forward(up_reader, writer, delay, window))
    except (ConnectionError, OSError):
        pass  # either side went away: the relay just closes both ends, as a router would drop the flow
    finally:
        for w in (upstream, writer):
            if w is not None:
                w.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()


async def run(port: int, delay_ms: float, window_kib: int = 0) -> None:
    delay = delay_ms / 1000.0
    window = window_kib * 1024
    server = await asyncio.start_server(lambda r, w: _serve(delay, r, w, window), "127.0.0.1", port, backlog=512)
    print(f"relay.ready port={port} delay_ms={delay_ms:g}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tendril.lab.relay", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 the iptables rule redirects to")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay added to each direction")
    parser.add_argument(
        "--window-kib",
        type=int,
        default=0,
        help="bytes held back per direction of a connection, in KiB: one connection then carries at most "
        "window / delay, as a TCP connection with twice that window carries at most window / round trip "
        "(0: 16 MiB, which never limits a lab link)",
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.port, args.delay_ms, args.window_kib))
    return 0


if __name__ == "__main__":
    sys.exit(main())
