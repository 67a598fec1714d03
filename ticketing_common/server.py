"""Server bootstrap shared by every service: one way to build, run and stop a gRPC process.

A service module exposes ``async def create_server(settings) -> ServiceServer`` built with
``build_server``; its ``__main__`` calls ``run(component, SettingsClass, create_server)``.
Tests call ``create_server`` with ``listen="127.0.0.1:0"`` and read ``server.port``.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import gc
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from ticketing_common import logs, mesh, metrics, startup, tls, tracing
from ticketing_common.cancellation import checkpoint
from ticketing_common.health import MeshHealthServicer
from ticketing_common.interceptors import ServiceInterceptor, trust_only
from ticketing_common.reflection import DocumentedReflectionServicer
from ticketing_common.settings import BaseSettings, SettingsError, load

log = logging.getLogger("ticketing.server")

# The public services of the mesh (ticketing_common.mesh); reflection lists all of them on
# every service.
PUBLIC_SERVICES = mesh.PUBLIC_SERVICES

MAX_MESSAGE_BYTES = 32 * 1024 * 1024
# Calls that have arrived but that the asyncio server has not picked up yet. gRPC's default
# hard limit (3,000) cancels the rest of a burst: 10,000 watchers opening WatchAvailability
# within a few seconds (a sale's page opening) lost about 5,000 streams to CANCELLED
# (bench/watch_fanout.py). A pending call costs a few KiB; the limit stays bounded.
MAX_PENDING_CALLS = 50_000
# How long a stopping process waits for its background jobs (admitter, CDC loop) to finish.
BACKGROUND_STOP_SECONDS = 5.0
# The cyclic garbage collector's thresholds in a serving process (CPython's are 700, 10, 10).
# A server's heap is mostly its open calls: 10,000 WatchAvailability streams are about 700,000
# tracked objects (about 70 per stream in grpc.aio), and a full collection walks all of them
# while nothing else runs. With the defaults the catalog ran one every few seconds while it
# sent to 10,000 watchers: each broadcast puts 10,000 writes in flight, the young collections
# it triggers promote them, and CPython's rule (a full collection once the promoted objects
# reach 25% of the old ones) was met again and again. Seven full collections in 20 s, 0.4-0.9 s
# each, were the p99 of the fan-out (bench/watch_fanout.py; bench/RESULTS.md, issue 12). Here
# a young collection runs every 50,000 new objects (a few ms; the catalog's bench run made 14
# of them), the middle one every 50 of those, a full one every 100 middle ones (and still only
# under the 25% rule): hours apart under a sale's load instead of seconds. Garbage without
# cycles is freed by reference counting as before; a cycle is found by the young collections
# if it dies young (what a call leaves at its start does), by the next full one otherwise.
GC_THRESHOLDS = (50_000, 50, 100)

S = TypeVar("S", bound=BaseSettings)
Cleanup = Callable[[], Awaitable[None]]


@dataclasses.dataclass
class ServiceBinding:
    """A servicer to register: its full service name and the generated add_*_to_server."""

    name: str
    register: Callable[[grpc.aio.Server], None]


@dataclasses.dataclass
class ServiceServer:
    server: grpc.aio.Server
    port: int
    health: MeshHealthServicer
    service_names: list[str]
    cleanups: list[Cleanup] = dataclasses.field(default_factory=list)
    # Long-running jobs (the CDC loop, the queue's admitter) started and stopped with the server.
    background: list[Callable[[], Awaitable[None]]] = dataclasses.field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    # Where /metrics is served (host:port; empty: nowhere) and the port it got.
    metrics_listen: str = ""
    metrics_port: int | None = None
    workers: int = 1
    # A plaintext server answering grpc.health.v1 alone (TICKETING_HEALTH_LISTEN), for probes
    # that cannot speak mutual TLS (the kubelet's native gRPC probes); None: none.
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None

    async def start(self) -> None:
        if self.metrics_listen and self.metrics_port is None:
            try:
                self.metrics_port = metrics.serve(self.metrics_listen, workers=self.workers)
            except OSError as exc:
                raise SettingsError(
                    f"cannot serve metrics on {self.metrics_listen}: {exc}"
                ) from exc
        await self.server.start()
        if self.health_server is not None:
            await self.health_server.start()
        for job in self.background:
            self._tasks.append(asyncio.create_task(_guard(job), name=getattr(job, "__name__", "")))
        for name in ["", *self.service_names]:
            await self.health.set_own(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float) -> None:
        """NOT_SERVING first so balancers move away, then drain in-flight calls, then close."""
        await self.health.enter_graceful_shutdown()
        await self._stop_background()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)
        await self.health.close()
        for cleanup in reversed(self.cleanups):
            try:
                await cleanup()
            except Exception:
                log.exception("cleanup failed")

    async def _stop_background(self) -> None:
        """Cancel the background jobs and wait for them, but never forever: a job stuck on a
        dependency that does not answer must not keep the process from stopping."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BACKGROUND_STOP_SECONDS
        stuck = set(self._tasks)
        while stuck and loop.time() < deadline:
            # Again every round: a library may have swallowed the last one
            # (ticketing_common.cancellation).
            for task in stuck:
                task.cancel()
            _, stuck = await asyncio.wait(stuck, timeout=min(0.2, deadline - loop.time()))
        for task in stuck:
            log.warning(
                "background job %s did not stop within %.0f s; leaving it",
                task.get_name(),
                BACKGROUND_STOP_SECONDS,
            )
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("background job %s failed: %s", task.get_name(), task.exception())
        self._tasks.clear()


async def _guard(job: Callable[[], Awaitable[None]]) -> None:
    """Run a background job; if it crashes, log and restart it after a pause."""
    while True:
        try:
            await job()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            checkpoint()  # not restarted when it failed because it was being stopped
            log.exception("background job %s crashed; restarting in 1 s", job)
            await asyncio.sleep(1)


def generic_handler(
    service: ServiceDescriptor, servicer: object, *, raw_responses: Sequence[str] = ()
) -> grpc.GenericRpcHandler:
    """The handler the generated ``add_*_to_server`` would register, except that methods named
    in ``raw_responses`` may return an already-serialized response (bytes) as well as a
    message: a cached page is sent as stored, without a parse and a re-serialize."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in service.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        serialize: Callable[[Any], bytes] = response_cls.SerializeToString
        if method.name in raw_responses:
            serialize = _passthrough(serialize)
        behavior = getattr(servicer, method.name)
        make = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make(
            behavior,
            request_deserializer=request_cls.FromString,
            response_serializer=serialize,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def _passthrough(serialize: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def serializer(response: Any) -> bytes:
        return response if isinstance(response, bytes) else serialize(response)

    return serializer


def build_server(
    settings: BaseSettings,
    bindings: Sequence[ServiceBinding],
    *,
    cleanups: Sequence[Cleanup] = (),
    background: Sequence[Callable[[], Awaitable[None]]] = (),
) -> ServiceServer:
    """The service's server on ``settings.listen``: mutual TLS (``ticketing_common.tls``) unless
    the settings ask for plaintext."""
    server_tls, client_tls = transport_credentials(settings)
    interceptor = (
        ServiceInterceptor()
        if settings.plaintext
        else ServiceInterceptor(trust_only(settings.tls_gateway_identity))
    )
    server = grpc.aio.server(
        # The tracing interceptor (none when tracing is off) first, so the server span covers
        # the whole call and the logs written inside it carry its trace id.
        interceptors=[*tracing.server_interceptors(), interceptor],
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
            ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
        ],
    )
    for binding in bindings:
        binding.register(server)
    own_names = [b.name for b in bindings]
    peers = {name: addr for name, addr in settings.peers.items() if name not in own_names}
    health = MeshHealthServicer(peers, client_tls)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection_names = [
        *PUBLIC_SERVICES,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ]
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        DocumentedReflectionServicer(reflection_names), server
    )
    try:
        if server_tls is None:
            port = server.add_insecure_port(settings.listen)
        else:
            port = server.add_secure_port(settings.listen, server_tls)
    except RuntimeError as exc:
        raise SettingsError(f"cannot listen on {settings.listen}: {exc}") from exc
    health_server, health_port = _health_only_server(settings, health)
    return ServiceServer(
        server=server,
        port=port,
        health=health,
        service_names=own_names,
        cleanups=list(cleanups),
        background=list(background),
        metrics_listen=settings.metrics_listen,
        workers=settings.workers,
        health_server=health_server,
        health_port=health_port,
    )


def _health_only_server(
    settings: BaseSettings, health: MeshHealthServicer
) -> tuple[grpc.aio.Server | None, int | None]:
    """The plaintext health port, when asked for: the same health answers as the service's
    port, and nothing else (no API, no reflection, no identity to forge)."""
    if not settings.health_listen:
        return None, None
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    try:
        return server, server.add_insecure_port(settings.health_listen)
    except RuntimeError as exc:
        raise SettingsError(f"cannot listen on {settings.health_listen}: {exc}") from exc


def transport_credentials(
    settings: BaseSettings,
) -> tuple[grpc.ServerCredentials | None, grpc.ChannelCredentials | None]:
    """The server's and its internal clients' credentials (both None in plaintext); a
    certificate file that cannot be read is a configuration error naming it."""
    files = settings.tls
    if files is None:
        return None, None
    missing = files.missing()
    if missing:
        raise SettingsError("mutual TLS: cannot read " + ", ".join(str(path) for path in missing))
    try:
        return tls.server_credentials(files), tls.channel_credentials(files)
    except (OSError, ValueError) as exc:
        raise SettingsError(f"mutual TLS: {exc}") from exc


async def serve(server: ServiceServer, settings: BaseSettings, component: str) -> None:
    """Start, log the port, run until SIGTERM/SIGINT, then stop gracefully."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await server.start()
    log.info(
        "%s serving",
        component,
        extra={
            "port": server.port,
            "listen": settings.listen,
            "services": server.service_names,
            "metrics_port": server.metrics_port,
        },
    )
    await stopping.wait()
    log.info(
        "%s stopping: NOT_SERVING, draining for up to %.1f s",
        component,
        settings.shutdown_grace_seconds,
    )
    await server.stop(settings.shutdown_grace_seconds)
    log.info("%s stopped", component)


def run(
    component: str,
    settings_cls: type[S],
    create_server: Callable[[S], Awaitable[ServiceServer]],
) -> None:
    """The body of every service's ``__main__``."""
    try:
        settings = load(settings_cls)
    except SettingsError as exc:
        print(f"{component}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    missing = settings.tls.missing() if settings.tls is not None else []
    if missing:
        print(
            f"{component}: configuration error: mutual TLS: cannot read "
            + ", ".join(str(path) for path in missing),
            file=sys.stderr,
        )
        raise SystemExit(2)
    logs.configure(component, settings.log_level)
    tracing.configure(component)
    siblings = _start_siblings(settings.workers)

    async def main() -> None:
        try:
            await startup.check_stores(settings)
            server = await create_server(settings)
            tune_gc()
            await serve(server, settings, component)
        except SettingsError as exc:
            log.error("%s cannot start: %s", component, exc)
            print(f"{component}: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    try:
        asyncio.run(main())
    finally:
        _stop_siblings(siblings, settings.shutdown_grace_seconds)
        tracing.shutdown()


def tune_gc() -> None:
    """The collector of a serving process, once it is built: what start-up made (modules,
    descriptors, the wiring; about 60,000 objects in the catalog) is moved out of the
    collector's sight for good (``gc.freeze``), and collections run at ``GC_THRESHOLDS``."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _start_siblings(workers: int) -> list[subprocess.Popen[bytes]]:
    """Start ``workers - 1`` more copies of this process on the same port. The kernel spreads
    connections over them (SO_REUSEPORT); each has its own event loop and database pool, so a
    service uses more than one core. They die with this process (parent-death signal)."""
    if workers <= 1:
        return []
    # The siblings serve no metrics of their own (see ticketing_common.metrics).
    env = os.environ | {"TICKETING_WORKERS": "1", "TICKETING_METRICS_LISTEN": ""}
    return [
        subprocess.Popen(sys.orig_argv, env=env, preexec_fn=_die_with_parent)
        for _ in range(workers - 1)
    ]


def _die_with_parent() -> None:
    # Runs in the child between fork and exec, before any thread of the child exists.
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _stop_siblings(siblings: list[subprocess.Popen[bytes]], grace: float) -> None:
    for child in siblings:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in siblings:
        try:
            child.wait(timeout=grace + 5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        metrics.process_ended(child.pid)
