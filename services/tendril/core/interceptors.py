"""Server interceptors shared by every service.

* :class:`ErrorInterceptor` turns a service's :class:`TendrilError` into a rich gRPC status
  (google.rpc.Status + ErrorInfo, + RetryInfo when the error has a retry delay) and any other
  exception into INTERNAL without leaking a traceback to the client (the traceback goes to the
  log). A request whose bytes do not parse as the method's message is answered INVALID_ARGUMENT
  before any servicer sees it. Messages and ErrorInfo metadata are bounded
  (:func:`tendril.core.errors.bounded`), so an error that echoes a huge input still reaches its
  caller.
* :class:`LoggingInterceptor` logs every call with its method, peer, duration and code.

Both wrap the four handler shapes (unary/stream in, unary/stream out) the same way, through
:func:`wrap_handler`.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from tendril.core.errors import ERROR_DOMAIN, MAX_ERROR_MESSAGE_BYTES, TendrilError, bounded, bounded_metadata
from tendril.core.identity import caller_id
from tendril.core.logs import get_logger

log = get_logger("tendril.rpc")

# Called around one RPC: (method, request-or-iterator, context, run) -> result.
Around = Callable[[str, Any, grpc.aio.ServicerContext, Callable[[], Any]], Any]


def rich_status(error: TendrilError) -> grpc.Status:
    """The gRPC status (code, message, ErrorInfo detail) for a service error."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=bounded_metadata(error.metadata)
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    details = [detail]
    if error.retry_delay is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromTimedelta(datetime.timedelta(seconds=max(error.retry_delay, 0.0)))
        details.append(any_pb2.Any())
        details[-1].Pack(retry)
    message = bounded(error.message, MAX_ERROR_MESSAGE_BYTES)
    status = status_pb2.Status(code=getattr(code_pb2, error.status_code.name), message=message, details=details)
    return rpc_status.to_status(status)


async def abort_with(context: grpc.aio.ServicerContext, error: TendrilError) -> None:
    """Abort the call with the error's rich status."""
    status = rich_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


class Unparsed:
    """What a request's bytes became when they did not parse (see :func:`tolerant`)."""

    __slots__ = ("error", "message_name")

    def __init__(self, error: Exception, message_name: str) -> None:
        self.error = error
        self.message_name = message_name

    def refusal(self, method: str) -> str:
        return bounded(
            f"the request to {method} could not be parsed as a {self.message_name} ({self.error}); "
            f"send a {self.message_name} in protobuf wire format",
            MAX_ERROR_MESSAGE_BYTES,
        )


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer`` returning :class:`Unparsed` instead of raising.

    NOTE: grpc.aio answers a deserializer's exception with UNKNOWN and the exception's Python
    type; handing the failure to the handler lets the error interceptor answer it properly.
    """
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    name = getattr(descriptor, "full_name", None) or "message of this method"

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:
            return Unparsed(exc, name)

    return parse


async def _parsed(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[Any]:
    """A request stream whose messages all parsed; aborts INVALID_ARGUMENT at the first that did not."""
    async for request in requests:
        if isinstance(request, Unparsed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.refusal(method))
        yield request


def _parsing(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """``handler`` with a :func:`tolerant` deserializer, answering unparsed requests INVALID_ARGUMENT."""
    parse = tolerant(handler.request_deserializer)
    if handler.unary_unary or handler.unary_stream:
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if isinstance(request, Unparsed):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.refusal(method))
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, parse, handler.response_serializer)
        inner_stream = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if isinstance(request, Unparsed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.refusal(method))
            async for item in inner_stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(unary_stream, parse, handler.response_serializer)
    if handler.stream_unary:
        inner_in = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            return await inner_in(_parsed(requests, context, method), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, parse, handler.response_serializer)
    inner_both = handler.stream_stream

    async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for item in inner_both(_parsed(requests, context, method), context):
            yield item

    return grpc.stream_stream_rpc_method_handler(stream_stream, parse, handler.response_serializer)


def wrap_handler(
    handler: grpc.RpcMethodHandler,
    method: str,
    unary: Callable[[str, Any, grpc.aio.ServicerContext, Callable[[], Awaitable[Any]]], Awaitable[Any]],
    streaming: Callable[[str, Any, grpc.aio.ServicerContext, Callable[[], AsyncIterator[Any]]], AsyncIterator[Any]],
) -> grpc.RpcMethodHandler:
    """Rebuild a method handler whose behaviour runs inside ``unary``/``streaming``."""
    if handler is None:
        return handler
    parse = handler.request_deserializer
    if handler.unary_unary or handler.stream_unary:
        inner = handler.unary_unary or handler.stream_unary

        async def call_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await unary(method, request, context, lambda: inner(request, context))

        factory = grpc.unary_unary_rpc_method_handler if handler.unary_unary else grpc.stream_unary_rpc_method_handler
        return factory(call_unary, parse, handler.response_serializer)
    inner_stream = handler.unary_stream or handler.stream_stream

    async def call_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for item in streaming(method, request, context, lambda: inner_stream(request, context)):
            yield item

    factory = grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
    return factory(call_stream, parse, handler.response_serializer)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps TendrilError (and stray exceptions) to gRPC statuses in one place."""

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        return wrap_handler(_parsing(handler, details.method), details.method, self._unary, self._streaming)

    @staticmethod
    async def _fail(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
        if isinstance(exc, TendrilError):
            await abort_with(context, exc)
        log.error("rpc.unhandled_exception", method=method, exc_info=exc)
        message = bounded(f"internal error in {method}: {type(exc).__name__}: {exc}", MAX_ERROR_MESSAGE_BYTES)
        await context.abort(grpc.StatusCode.INTERNAL, message)

    async def _unary(self, method: str, request: Any, context: grpc.aio.ServicerContext, run: Any) -> Any:
        try:
            return await run()
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:
            await self._fail(context, method, exc)

    async def _streaming(self, method: str, request: Any, context: grpc.aio.ServicerContext, run: Any) -> Any:
        try:
            async for item in run():
                yield item
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:
            await self._fail(context, method, exc)


class LoggingInterceptor(grpc.aio.ServerInterceptor):
    """Logs one line per call: method, caller, duration and resulting code."""

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if details.method.startswith(("/grpc.health.", "/grpc.reflection.")):
            return handler
        return wrap_handler(handler, details.method, self._unary, self._streaming)

    @staticmethod
    def _log(
        method: str, context: grpc.aio.ServicerContext, peer: str, start: float, error: BaseException | None
    ) -> None:
        code = context.code() if hasattr(context, "code") else None
        if error is not None and code in (None, grpc.StatusCode.OK):
            code = grpc.StatusCode.CANCELLED if isinstance(error, BaseException) else code
        name = code.name if isinstance(code, grpc.StatusCode) else "OK"
        level = log.debug if name in ("OK", "CANCELLED") else log.warning
        level(
            "rpc",
            method=method,
            peer=peer,
            code=name,
            ms=round((time.perf_counter() - start) * 1000, 2),
            details=context.details() if name != "OK" and hasattr(context, "details") else None,
        )

    async def _unary(self, method: str, request: Any, context: grpc.aio.ServicerContext, run: Any) -> Any:
        start = time.perf_counter()
        peer = caller_id(context) or context.peer()
        error: BaseException | None = None
        try:
            return await run()
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._log(method, context, peer, start, error)

    async def _streaming(self, method: str, request: Any, context: grpc.aio.ServicerContext, run: Any) -> Any:
        # NOTE: the caller is read when the call starts: a stream cancelled by a server stop
        # may be finalised after its call is torn down, and reading the auth context of a
        # torn-down call crashes the process (seen with grpcio 1.85).
        start = time.perf_counter()
        peer = caller_id(context) or context.peer()
        error: BaseException | None = None
        try:
            async for item in run():
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._log(method, context, peer, start, error)
