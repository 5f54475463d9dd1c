"""``python -m bench.gateway_load``: one process of simulated workers for the gateway bench.

Each simulated worker does what a worker does to its gateway, and nothing else: it keeps its
registry record alive (Put every TTL/3, presenting the secret its first Put returned), keeps a
Subscribe stream open on the request topic, and answers every ResourceRequest it reads with an
offer: one unary call straight to the publishing scheduler's endpoint (as the Arbiter calls
``AllocationService.Offer``), so offers never pass through the gateway.

Workers are cheap: coroutines of one event loop, sharing a few channels (``--per-channel``
streams each). The process prints one JSON line ``{"ready": N}`` once every subscription
exists, and one line of counters (with every message's delivery time: from the gateway's
``published_at`` stamp to reading it) when SIGTERM (or ``--seconds``) ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time

import grpc

from tendril_proto.arbiter.v1 import arbiter_pb2
from tendril_proto.common.v1 import common_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc

OFFER_METHOD = "/bench.GatewayBench/Offer"
PEER_ID_KEY = "tendril-peer-id"
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 8 << 20), ("grpc.so_reuseport", 0)]
CALL_TIMEOUT = 5.0


class Counters:
    def __init__(self) -> None:
        self.subscribed = 0
        self.puts_ok = 0
        self.puts_failed = 0
        self.requests_read = 0
        self.offers_sent = 0
        self.offers_failed = 0
        self.streams_ended = 0
        self.put_failures: dict[str, int] = {}  # status code name -> count


class Load:
    def __init__(self, gateway: str, topic: str, ttl: float, per_channel: int) -> None:
        self.gateway = gateway
        self.topic = topic
        self.ttl = ttl
        self.per_channel = per_channel
        self.counters = Counters()
        self._gateway_channels: list[grpc.aio.Channel] = []
        self._offer_channels: dict[str, grpc.aio.Channel] = {}
        self._offers: set[asyncio.Task[None]] = set()
        # seconds from the gateway's stamp (published_at) to this process reading the message;
        # one wall clock on one host
        self.delivery: list[float] = []

    def gateway_channel(self, index: int) -> grpc.aio.Channel:
        while len(self._gateway_channels) <= index // self.per_channel:
            self._gateway_channels.append(grpc.aio.insecure_channel(self.gateway, options=CHANNEL_OPTIONS))
        return self._gateway_channels[index // self.per_channel]

    def offer_call(self, address: str) -> grpc.aio.UnaryUnaryMultiCallable:
        channel = self._offer_channels.get(address)
        if channel is None:
            channel = self._offer_channels[address] = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        return channel.unary_unary(OFFER_METHOD)

    async def refresh(self, worker_id: str, channel: grpc.aio.Channel) -> None:
        stub = gateway_pb2_grpc.RegistryServiceStub(channel)
        metadata = ((PEER_ID_KEY, worker_id),)
        packed = gateway_pb2.Record(kind="worker", id=worker_id, ttl_seconds=self.ttl)
        packed.payload.Pack(common_pb2.WorkerRecord(worker_id=worker_id))
        secret = ""
        # NOTE: a random phase, so N workers do not all refresh in the same instant.
        await asyncio.sleep((hash(worker_id) % 1000) / 1000 * self.ttl / 3)
        while True:
            try:
                reply = await stub.Put(
                    gateway_pb2.PutRequest(record=packed, secret=secret), metadata=metadata, timeout=CALL_TIMEOUT
                )
                secret = reply.secret or secret
                self.counters.puts_ok += 1
            except grpc.aio.AioRpcError as exc:
                self.counters.puts_failed += 1
                code = exc.code().name
                self.counters.put_failures[code] = self.counters.put_failures.get(code, 0) + 1
            await asyncio.sleep(self.ttl / 3)

    async def worker(self, worker_id: str, index: int, ready: asyncio.Event, count: int) -> None:
        channel = self.gateway_channel(index)
        refresh = asyncio.create_task(self.refresh(worker_id, channel))
        bus = gateway_pb2_grpc.BusServiceStub(channel)
        call = bus.Subscribe(
            gateway_pb2.SubscribeRequest(topic=self.topic, subscriber=worker_id),
            metadata=((PEER_ID_KEY, worker_id),),
        )
        try:
            await call.initial_metadata()  # the subscription exists
            self.counters.subscribed += 1
            if self.counters.subscribed == count:
                ready.set()
            request = arbiter_pb2.ResourceRequest()
            async for message in call:
                stamp = message.envelope.published_at
                self.delivery.append(time.time() - stamp.seconds - stamp.nanos * 1e-9)
                request.ParseFromString(message.envelope.payload.value)
                self.counters.requests_read += 1
                task = asyncio.create_task(self.offer(request.scheduler.address, request.request_id, worker_id))
                self._offers.add(task)
                task.add_done_callback(self._offers.discard)
        except grpc.aio.AioRpcError:
            pass  # the stream ended (the run stops, or the gateway dropped it): its missed offers count as lost
        finally:
            self.counters.streams_ended += 1
            refresh.cancel()
            call.cancel()

    async def offer(self, address: str, request_id: str, worker_id: str) -> None:
        try:
            await self.offer_call(address)(f"{request_id}|{worker_id}".encode(), timeout=CALL_TIMEOUT)
            self.counters.offers_sent += 1
        except grpc.aio.AioRpcError:
            self.counters.offers_failed += 1

    async def close(self) -> None:
        for channel in [*self._gateway_channels, *self._offer_channels.values()]:
            await channel.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    load = Load(args.gateway, args.topic, args.ttl, args.per_channel)
    ready = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    ids = [f"{args.prefix}-{i:05d}" for i in range(args.count)]
    workers = [asyncio.create_task(load.worker(wid, i, ready, args.count)) for i, wid in enumerate(ids)]
    started = time.monotonic()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ready.wait(), timeout=args.ready_timeout)
    print(json.dumps({"ready": load.counters.subscribed, "seconds": round(time.monotonic() - started, 2)}), flush=True)
    cpu_start = time.process_time()
    wall_start = time.monotonic()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=args.seconds)
    cpu = (time.process_time() - cpu_start) / max(time.monotonic() - wall_start, 1e-9)
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    await load.close()
    return {
        **vars(load.counters),
        "cpu_cores": round(cpu, 3),
        "seconds": round(time.monotonic() - started, 2),
        "delivery_seconds": [round(x, 5) for x in load.delivery],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--prefix", required=True, help="worker ids are PREFIX-00000, ...")
    parser.add_argument("--topic", default="tendril/worker")
    parser.add_argument("--ttl", type=float, default=15.0)
    parser.add_argument("--per-channel", type=int, default=50, help="streams per shared channel")
    parser.add_argument("--ready-timeout", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=600.0, help="end after this long at most")
    args = parser.parse_args()
    counters = asyncio.run(run(args))
    print(json.dumps({"done": counters}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
