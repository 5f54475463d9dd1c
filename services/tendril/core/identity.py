"""Who is calling: the peer id of a gRPC caller.

Without mTLS the caller names itself in the metadata key ``tendril-peer-id``; with mTLS the
identity is the common name of the client certificate and the metadata key is ignored.
"""

from __future__ import annotations

from typing import Any

import grpc

PEER_ID_METADATA_KEY = "tendril-peer-id"


def peer_id_metadata(peer_id: str) -> tuple[tuple[str, str], ...]:
    """Metadata that names the caller (attach to every call a peer makes)."""
    return ((PEER_ID_METADATA_KEY, peer_id),)


def certificate_id(context: grpc.aio.ServicerContext | Any) -> str:
    """The common name of the caller's verified client certificate, or "" without one (no mTLS)."""
    auth = context.auth_context() if hasattr(context, "auth_context") else {}
    common_names = auth.get("x509_common_name") if auth else None
    if common_names:
        name = common_names[0]
        return name.decode() if isinstance(name, bytes) else str(name)
    return ""


def caller_id(context: grpc.aio.ServicerContext | Any) -> str:
    """The caller's peer id, or "" when it gave none."""
    # NOTE: a server that requires client certificates lets no call in without one, so under
    # mTLS the metadata key (which any caller can forge) is never consulted.
    name = certificate_id(context)
    if name:
        return name
    for key, value in context.invocation_metadata() or ():
        if key == PEER_ID_METADATA_KEY:
            return str(value)
    return ""
