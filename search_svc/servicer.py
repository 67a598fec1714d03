"""gRPC edge of the search service: proto <-> domain translation only.

Methods not defined here answer UNIMPLEMENTED (reason NOT_IMPLEMENTED) through the
shared interceptor until their issue lands.
"""

from __future__ import annotations

from ticketing.search.v1 import search_pb2_grpc


class SearchServiceServicer(search_pb2_grpc.SearchServiceServicer):
    """Event search over the index the CDC worker maintains."""
