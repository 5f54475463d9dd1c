"""A raw TCP transfer between two hosts of a lab: what a shaped link really carries.

``python -m tendril.lab.measure recv --listen IP:PORT`` accepts one connection, reads it to
its end and prints one JSON line ``{"bytes": B, "seconds": S, "mbit_per_s": R}``;
``python -m tendril.lab.measure send --to IP:PORT --seconds S`` first times PINGS one-byte
round trips (their median: ``{"rtt_ms": T}``), then writes as fast as it can for S seconds.
The lab runs each inside its host's namespace (:meth:`tendril.lab.lab.Lab.measure`).

The rate is taken from the first 0.3 s after the first byte to the last byte, so that tbf's
initial bucket (a few tens of KiB) and TCP's slow start do not inflate or deflate it.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time

CHUNK = 1 << 20
SKIP_SECONDS = 0.3
READY = "ready"
PINGS = 5


def _exactly_one(sock: socket.socket) -> None:
    if not sock.recv(1):
        raise ConnectionError("the other side closed during the round trips")


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def receive(listen: str, timeout: float) -> dict[str, float]:
    """Accept one connection on ``listen``, read it to EOF; the rate in Mbit/s."""
    with socket.create_server(_address(listen)) as server:
        server.settimeout(timeout)
        print(READY, flush=True)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(timeout)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(PINGS):
                _exactly_one(conn)
                conn.sendall(b"p")
            buffer = bytearray(CHUNK)
            total = 0
            first = mark = 0.0
            marked = 0
            last = 0.0
            while True:
                n = conn.recv_into(buffer)
                now = time.monotonic()
                if n == 0:
                    break
                if total == 0:
                    first = now
                total += n
                last = now
                if not mark and now - first >= SKIP_SECONDS:
                    mark, marked = now, total
    seconds = last - mark if mark else last - first
    counted = total - marked
    rate = counted * 8 / seconds / 1e6 if seconds > 0 else 0.0
    return {"bytes": total, "seconds": round(seconds, 3), "mbit_per_s": round(rate, 1)}


def send(to: str, seconds: float) -> dict[str, float]:
    """Time PINGS round trips to ``to``, then write to it for ``seconds``."""
    payload = b"\0" * CHUNK
    sent = 0
    rtts: list[float] = []
    with socket.create_connection(_address(to), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(PINGS):
            began = time.monotonic()
            sock.sendall(b"p")
            _exactly_one(sock)
            rtts.append(time.monotonic() - began)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sock.sendall(payload)
            sent += len(payload)
    return {"sent": sent, "rtt_ms": round(1000 * statistics.median(rtts), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tendril.lab.measure", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    recv = commands.add_parser("recv", help="receive one transfer and print its rate")
    recv.add_argument("--listen", required=True, metavar="IP:PORT")
    recv.add_argument("--timeout", type=float, default=30.0)
    out = commands.add_parser("send", help="send for --seconds")
    out.add_argument("--to", required=True, metavar="IP:PORT")
    out.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.command == "recv":
        print(json.dumps(receive(args.listen, args.timeout)), flush=True)
    else:
        print(json.dumps(send(args.to, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
