"""Wiring of the queue service: the one place its parts are put together."""

from __future__ import annotations

from ticketing.queue.v1 import queue_pb2, queue_pb2_grpc

from queue_svc.servicer import QueueServiceServicer
from queue_svc.settings import QueueSettings
from ticketing_common.server import ServiceBinding, ServiceServer, build_server

SERVICE_NAME = queue_pb2.DESCRIPTOR.services_by_name["QueueService"].full_name


async def create_server(settings: QueueSettings) -> ServiceServer:
    servicer = QueueServiceServicer()
    binding = ServiceBinding(
        SERVICE_NAME,
        lambda server: queue_pb2_grpc.add_QueueServiceServicer_to_server(servicer, server),
    )
    return build_server(settings, [binding])
