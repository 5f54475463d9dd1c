"""Channels from one bridge to the peers its job needs, and how their errors are passed on.

Every call names the worker (peer id = worker id). Channels are opened on first use and kept
for the job's life, so a per-batch ReportProgress costs one round trip, not a connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from tendril.bridge.errors import BridgeError
from tendril.core.channel import error_info_reason, open_channel
from tendril.core.errors import TendrilError, kind_for_status
from tendril.core.tensorstream import TensorStreamReason
from tendril_sdk.reasons import BridgeReason


def remote_error(error: grpc.aio.AioRpcError, peer: str) -> BridgeError:
    """A remote peer's failure as this bridge's error: same status code, message naming the peer."""
    code = error.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        hint = f"{peer} did not answer ({error.details()}); check that it runs, then retry"
    else:
        hint = f"{peer} answered {code.name}: {error.details()}"
    return BridgeError(kind_for_status(code), hint, reason=error_info_reason(error) or BridgeReason.remote(code))


class Remotes:
    """Cached channels to other peers, all calling as ``worker_id``."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = open_channel(address, peer_id=self.worker_id)
            self._channels[address] = channel
        return channel

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            with contextlib.suppress(Exception):
                await channel.close(grace=0.5)


@contextlib.asynccontextmanager
async def calling(peer: str) -> AsyncIterator[None]:
    """Turn a failed call to ``peer`` into a BridgeError that keeps its status code."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise remote_error(exc, peer) from exc
    except BridgeError:
        raise
    except TendrilError as exc:
        # NOTE: the tensor-stream client reports a peer that gave no reason as RPC_FAILED; the
        # bridge answers REMOTE_<code> for that, as for every other peer, and passes real
        # reasons (ROUND_CLOSED, ...) on unchanged.
        reason = BridgeReason.remote(exc.status_code) if exc.reason == TensorStreamReason.RPC_FAILED else exc.reason
        raise BridgeError(exc.kind, exc.message, reason=reason, metadata=exc.metadata) from exc
