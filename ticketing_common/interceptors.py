"""The one place where domain errors become gRPC statuses.

Every service installs ``ServiceInterceptor``. Around each call it
- takes the request id from ``x-request-id`` (Envoy sets it; a direct caller may too) or makes
  one, and the caller from the gateway's identity headers, for the logs;
- turns a ``DomainError`` into its canonical status with a ``google.rpc.ErrorInfo`` (reason,
  domain, metadata) in ``grpc-status-details-bin``, which Envoy's transcoder renders as JSON with
  the matching HTTP code;
- turns ``NotImplementedError`` into UNIMPLEMENTED and any other exception into INTERNAL
  (logged with its traceback), so nothing a client sends can crash a service;
- answers a request whose bytes do not parse as its message (bad UTF-8 in a string field, a
  truncated varint: what a REST query like ``?term=%ff`` becomes once transcoded) with
  INVALID_ARGUMENT (reason MALFORMED_REQUEST) instead of gRPC's own UNKNOWN.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ticketing_common import tls
from ticketing_common.errors import ERROR_DOMAIN, DomainError, InvalidArgument, Kind, Reason
from ticketing_common.identity import REQUEST_ID_HEADER, USER_HEADER, identity_headers_trusted
from ticketing_common.logs import request_id_var, user_id_var
from ticketing_common.metrics import CallMetrics

log = logging.getLogger("ticketing.rpc")

_CODES: dict[Kind, int] = {kind: getattr(code_pb2, kind.value) for kind in Kind}
_QUIET_METHOD_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def error_status(
    kind: Kind, reason: str, message: str, metadata: dict[str, str] | None = None
) -> Any:
    """A grpc.Status carrying google.rpc.Status with an ErrorInfo detail."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata or {})
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=_CODES[kind], message=message, details=[detail])
    return rpc_status.to_status(status)


def _status_for(exc: BaseException) -> Any:
    if isinstance(exc, DomainError):
        return error_status(exc.kind, exc.reason.value, exc.message, exc.metadata)
    if isinstance(exc, NotImplementedError):
        return error_status(
            Kind.UNIMPLEMENTED, Reason.NOT_IMPLEMENTED.value, "method not implemented yet"
        )
    return None


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    status = _status_for(exc)
    if status is None:
        log.exception("unhandled error in %s", method)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; it has been logged")
    else:
        level = logging.WARNING if status.code == grpc.StatusCode.INTERNAL else logging.INFO
        log.log(level, "%s failed: %s %s", method, status.code.name, status.details)
        await context.abort(status.code, status.details, status.trailing_metadata)


class _Undecodable:
    """What the deserializer hands on for bytes that do not parse: the handler, which can set a
    status (a deserializer cannot), answers INVALID_ARGUMENT."""

    __slots__ = ("cause",)

    def __init__(self, cause: Exception) -> None:
        self.cause = cause

    def error(self, method: str) -> InvalidArgument:
        return InvalidArgument(
            f"the request could not be decoded: {self.cause}",
            reason=Reason.MALFORMED_REQUEST,
            metadata={"method": method},
        )


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # protobuf's DecodeError, or whatever a custom parser raises
            return _Undecodable(exc)

    return parse


Trust = Callable[[grpc.aio.ServicerContext], bool]


def _trust_everyone(_context: grpc.aio.ServicerContext) -> bool:
    return True


def trust_only(identity: str) -> Trust:
    """Believe the identity headers of a peer whose certificate names ``identity``."""

    def trusts(context: grpc.aio.ServicerContext) -> bool:
        return identity in tls.peer_identities(context)

    return trusts


def _enter(context: grpc.aio.ServicerContext, trusts: Trust) -> None:
    metadata = dict((k, v) for k, v in (context.invocation_metadata() or ()) if isinstance(v, str))
    request_id_var.set(metadata.get(REQUEST_ID_HEADER) or uuid.uuid4().hex)
    trusted = trusts(context)
    identity_headers_trusted.set(trusted)
    user_id_var.set(metadata.get(USER_HEADER) if trusted else None)


def _code_of_abort(context: grpc.aio.ServicerContext) -> str:
    """The code a handler aborted with (``context.abort`` sets it before raising)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int):
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), "UNKNOWN")
    return "UNKNOWN"


def _code_of(exc: BaseException) -> str:
    """The code ``_abort`` answers ``exc`` with."""
    status = _status_for(exc)
    return "INTERNAL" if status is None else status.code.name


_CALLS: dict[tuple[str, str], CallMetrics] = {}


def _calls(method: str, grpc_type: str) -> CallMetrics:
    found = _CALLS.get((method, grpc_type))
    if found is None:
        found = _CALLS[(method, grpc_type)] = CallMetrics(method, grpc_type)
    return found


def _wrap_unary(
    behavior: Callable[..., Any], method: str, trusts: Trust
) -> Callable[..., Awaitable[Any]]:
    calls = _calls(method, "unary")

    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        _enter(context, trusts)
        calls.started()
        started = time.perf_counter()
        code = "OK"
        try:
            if isinstance(request, _Undecodable):
                raise request.error(method)
            result = behavior(request, context)
            if inspect.isawaitable(result):
                result = await result
            return result
        except grpc.aio.AbortError:
            code = _code_of_abort(context)
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception as exc:
            code = _code_of(exc)
            await _abort(context, exc, method)
        finally:
            seconds = time.perf_counter() - started
            calls.handled(code, seconds)
            if not method.startswith(_QUIET_METHOD_PREFIXES):
                log.debug("%s done", method, extra={"duration_ms": seconds * 1e3})

    return handler


def _wrap_stream(
    behavior: Callable[..., Any], method: str, trusts: Trust
) -> Callable[..., AsyncIterator[Any]]:
    calls = _calls(method, "server_stream")

    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        _enter(context, trusts)
        calls.started()
        started = time.perf_counter()
        code = "OK"
        try:
            if isinstance(request, _Undecodable):
                raise request.error(method)
            result = behavior(request, context)
            if inspect.isawaitable(result):
                await result  # a handler that writes with context.write()
                return
            async for item in result:
                yield item
        except grpc.aio.AbortError:
            code = _code_of_abort(context)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = "CANCELLED"  # the client went away (or hung up on a watch)
            raise
        except Exception as exc:
            code = _code_of(exc)
            await _abort(context, exc, method)
        finally:
            calls.handled(code, time.perf_counter() - started)

    return handler


def _wrap_bidi(behavior: Callable[..., Any], method: str) -> Callable[..., Awaitable[Any]]:
    """Client- and bidi-streaming methods (reflection): an undecodable message in the stream
    ends the call with INVALID_ARGUMENT; everything else passes through untouched."""

    async def checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, _Undecodable):
                raise request.error(method)
            yield request

    async def handler(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        try:
            result = behavior(checked(requests), context)
            if inspect.isawaitable(result):
                return await result
            async for item in result:
                await context.write(item)
        except grpc.aio.AbortError:
            raise
        except DomainError as exc:
            await _abort(context, exc, method)

    return handler


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """``trusts`` says, per call, whether the peer may set the caller's identity headers
    (``trust_only(gateway identity)`` under mutual TLS; everyone by default: plaintext)."""

    def __init__(self, trusts: Trust = _trust_everyone) -> None:
        self._trusts = trusts
        # Each method's wrapped handler, made at its first call and kept with the handler it
        # wraps: the server looks the handler up again for every call, and a handler wrapped
        # anew per call cost each call a handler and its closures, kept for as long as the
        # call lasts (each of 10,000 WatchAvailability watchers, bench/watch_fanout.py).
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        kept = self._wrapped.get(method)
        if kept is not None and kept[0] is handler:
            return kept[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        parse = _tolerant(handler.request_deserializer)
        serialize = handler.response_serializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method, self._trusts),
                request_deserializer=parse,
                response_serializer=serialize,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method, self._trusts),
                request_deserializer=parse,
                response_serializer=serialize,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_bidi(handler.stream_stream, method),
                request_deserializer=parse,
                response_serializer=serialize,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_bidi(handler.stream_unary, method),
                request_deserializer=parse,
                response_serializer=serialize,
            )
        return handler
