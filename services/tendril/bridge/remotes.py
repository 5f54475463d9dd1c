"""Channels from one bridge to the peers its job needs, and how their errors are passed on.

Every call names the worker (peer id = worker id). Channels are opened on first use and kept
for the job's life (a :class:`~tendril.core.calls.ChannelPool`), so a per-batch
ReportProgress costs one round trip, not a connection. A peer's failure is passed on by
:func:`~tendril.core.calls.remote_error`: its status code's kind, its reason, or
``REMOTE_<CODE>`` when it gave none.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from tendril.bridge.errors import BridgeError
from tendril.core.calls import ChannelPool, remote_error, upstream_code
from tendril.core.errors import ErrorKind, TendrilError
from tendril.core.tensorstream import TensorStreamReason
from tendril_sdk.reasons import BridgeReason

# NOTE: one job talks to at most a DataFetcher, a scheduler and a parameter server; nothing to evict.
_CLOSE_GRACE_SECONDS = 0.5


class Remotes(ChannelPool):
    """Channels to other peers, all calling as ``worker_id``, kept for the job's life."""

    def __init__(self, worker_id: str) -> None:
        super().__init__(worker_id, max_channels=None, close_grace=_CLOSE_GRACE_SECONDS)
        self.worker_id = worker_id

    async def close(self, grace: float | None = _CLOSE_GRACE_SECONDS) -> None:
        await super().close(grace)


def _remote(kind: ErrorKind, code: grpc.StatusCode) -> BridgeReason:
    return BridgeReason.remote(code)


@contextlib.asynccontextmanager
async def calling(peer: str) -> AsyncIterator[None]:
    """Turn a failed call to ``peer`` into a BridgeError that keeps its status code's kind."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise remote_error(exc, peer, BridgeError, no_reason=_remote) from exc
    except BridgeError:
        raise
    except TendrilError as exc:
        # NOTE: the tensor-stream client reports a peer that gave no reason as RPC_FAILED; the
        # bridge answers REMOTE_<code> for that, as for every other peer, and passes real
        # reasons (ROUND_CLOSED, ...) on unchanged.
        reason = BridgeReason.remote(upstream_code(exc)) if exc.reason == TensorStreamReason.RPC_FAILED else exc.reason
        raise BridgeError(exc.kind, exc.message, reason=reason, metadata=exc.metadata) from exc
