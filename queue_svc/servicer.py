"""gRPC edge of the queue service: proto <-> domain translation and the caller's identity only.
Errors are raised as domain errors; the shared interceptor turns them into statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from ticketing.queue.v1 import queue_pb2, queue_pb2_grpc

from queue_svc import mapping
from queue_svc.service import QueueService
from queue_svc.watch import WatchHub
from ticketing_common.identity import Caller, caller_from_metadata
from ticketing_common.pagination import parse_id


def _caller(context: grpc.aio.ServicerContext) -> Caller:
    return caller_from_metadata(context.invocation_metadata())


class QueueServiceServicer(queue_pb2_grpc.QueueServiceServicer):
    """The virtual waiting queue."""

    def __init__(self, service: QueueService, hub: WatchHub) -> None:
        self._service = service
        self._hub = hub

    async def JoinQueue(
        self, request: queue_pb2.JoinQueueRequest, context: grpc.aio.ServicerContext
    ) -> queue_pb2.QueueEntry:
        user = _caller(context).require_user()
        entry = await self._service.join(parse_id(request.event_id, "event_id"), user)
        return mapping.entry_to_proto(entry)

    async def GetQueuePosition(
        self, request: queue_pb2.GetQueuePositionRequest, context: grpc.aio.ServicerContext
    ) -> queue_pb2.QueueEntry:
        user = _caller(context).require_user()
        entry = await self._service.position(parse_id(request.event_id, "event_id"), user)
        return mapping.entry_to_proto(entry)

    async def WatchQueue(
        self, request: queue_pb2.WatchQueueRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[queue_pb2.QueueEntry]:
        user = _caller(context).require_user()
        async for entry in self._hub.watch(parse_id(request.event_id, "event_id"), user):
            yield mapping.entry_to_proto(entry)

    async def LeaveQueue(
        self, request: queue_pb2.LeaveQueueRequest, context: grpc.aio.ServicerContext
    ) -> queue_pb2.QueueEntry:
        user = _caller(context).require_user()
        entry = await self._service.leave(parse_id(request.event_id, "event_id"), user)
        return mapping.entry_to_proto(entry)

    async def GetQueueStats(
        self, request: queue_pb2.GetQueueStatsRequest, context: grpc.aio.ServicerContext
    ) -> queue_pb2.QueueStats:
        _caller(context).require_operator()
        stats = await self._service.stats(parse_id(request.event_id, "event_id"))
        return mapping.stats_to_proto(stats)

    async def UpdateQueueControl(
        self, request: queue_pb2.UpdateQueueControlRequest, context: grpc.aio.ServicerContext
    ) -> queue_pb2.QueueStats:
        _caller(context).require_operator()
        stats = await self._service.control(
            parse_id(request.event_id, "event_id"),
            paused=request.paused if request.HasField("paused") else None,
            rate_per_minute=request.admission_rate_per_minute
            if request.HasField("admission_rate_per_minute")
            else None,
            max_active=request.max_active_users if request.HasField("max_active_users") else None,
        )
        return mapping.stats_to_proto(stats)
