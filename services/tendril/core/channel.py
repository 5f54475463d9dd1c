"""The one client channel factory: bounded messages, keepalive, and the caller's peer id.

Channels that are kept (one per peer) live in :class:`tendril.core.calls.ChannelPool`.
"""

from __future__ import annotations

from typing import Any

import grpc

from tendril.core import tls, tracing
from tendril.core.identity import PEER_ID_METADATA_KEY
from tendril.core.server import MAX_MESSAGE_BYTES

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_retries", 1),
    # NOTE: peers come and go (restarts, replacements). gRPC's default reconnect backoff grows
    # to 120 s and subchannels are shared process-wide, so one refused connection could keep
    # every channel to that peer failing fast for minutes. Cap the backoff at 5 s and give
    # each channel its own subchannels so a fresh channel really dials afresh.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    ("grpc.use_local_subchannel_pool", 1),
]


def _with_peer(details: grpc.aio.ClientCallDetails, peer_id: str) -> grpc.aio.ClientCallDetails:
    metadata = list(details.metadata or [])
    if not any(k == PEER_ID_METADATA_KEY for k, _ in metadata):
        metadata.append((PEER_ID_METADATA_KEY, peer_id))
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*metadata),
        details.credentials,
        details.wait_for_ready,
    )


class _PeerIdUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_peer(details, self.peer_id), request)


class _PeerIdUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_peer(details, self.peer_id), request)


class _PeerIdStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id

    async def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_peer(details, self.peer_id), request_iterator)


class _PeerIdStreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id

    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_peer(details, self.peer_id), request_iterator)


def open_channel(
    address: str,
    *,
    peer_id: str = "",
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.aio.Channel:
    """An aio channel to ``address`` ("host:port" or "unix:/path") that names the caller.

    ``credentials`` None means the process's default from :func:`tendril.core.tls.configure`
    (mTLS when configured; always plaintext for ``unix:`` addresses).
    """
    interceptors: list[Any] = []
    if peer_id:
        interceptors = [
            _PeerIdUnaryUnary(peer_id),
            _PeerIdUnaryStream(peer_id),
            _PeerIdStreamUnary(peer_id),
            _PeerIdStreamStream(peer_id),
        ]
    interceptors += tracing.client_interceptors()  # none unless tracing.setup enabled tracing
    if credentials is None:
        credentials = tls.default_channel_credentials(address)
    if credentials is not None:
        options = [*CHANNEL_OPTIONS, *tls.channel_options(address)]
        return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=interceptors)
