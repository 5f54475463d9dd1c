"""The bridge's per-job token check: metadata ``authorization: Bearer <token>``.

NOTE: grpc.health.v1 and reflection answer without the token: they reveal nothing about the
job, and they let an operator run ``grpcurl -unix bridge.sock list``. Every JobBridgeService
call needs the token; the socket itself is 0600 in a 0700 directory.
"""

from __future__ import annotations

import hmac
from typing import Any

import grpc

from tendril.bridge.errors import BridgeError
from tendril.core.errors import ErrorKind
from tendril.core.interceptors import wrap_handler
from tendril_sdk.bridge import AUTHORIZATION_KEY, TOKEN_ENV
from tendril_sdk.reasons import BridgeReason

OPEN_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata that carries ``token``."""
    return ((AUTHORIZATION_KEY, f"Bearer {token}"),)


def _refusal(why: str) -> BridgeError:
    return BridgeError(
        ErrorKind.UNAUTHENTICATED,
        f"{why}; send metadata 'authorization: Bearer <token>' with the token from env {TOKEN_ENV}",
        reason=BridgeReason.BAD_BRIDGE_TOKEN,
    )


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call that does not carry this job's token (UNAUTHENTICATED)."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("a bridge needs a non-empty token")
        self._expected = f"Bearer {token}".encode()

    def _check(self, metadata: Any) -> BridgeError | None:
        values = [v for k, v in (metadata or ()) if k == AUTHORIZATION_KEY]
        if not values:
            return _refusal("the call has no authorization metadata")
        value = values[0].encode() if isinstance(values[0], str) else bytes(values[0])
        if not hmac.compare_digest(value, self._expected):
            return _refusal("the bridge token is wrong")
        return None

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if details.method.startswith(OPEN_PREFIXES):
            return handler
        error = self._check(details.invocation_metadata)
        if error is None:
            return handler

        async def refuse_unary(method: str, request: Any, context: Any, run: Any) -> Any:
            raise error

        async def refuse_stream(method: str, request: Any, context: Any, run: Any) -> Any:
            raise error
            yield  # pragma: no cover - makes this an async generator like the handler it replaces

        return wrap_handler(handler, details.method, refuse_unary, refuse_stream)
