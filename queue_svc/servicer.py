"""gRPC edge of the queue service: proto <-> domain translation only.

Methods not defined here answer UNIMPLEMENTED (reason NOT_IMPLEMENTED) through the
shared interceptor until their issue lands.
"""

from __future__ import annotations

from ticketing.queue.v1 import queue_pb2_grpc


class QueueServiceServicer(queue_pb2_grpc.QueueServiceServicer):
    """The virtual waiting queue."""
