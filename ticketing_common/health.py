"""grpc.health.v1 for one service, answering for the whole mesh.

A service reports its own names from its local status table. For the name of another
service of the mesh (``TICKETING_PEERS``) it asks that peer, with a short deadline, so the
gateway can route every health check to any live service and still get each service's truth.
"""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

log = logging.getLogger("ticketing.health")

PEER_CHECK_TIMEOUT_SECONDS = 1.0


class MeshHealthServicer(health.aio.HealthServicer):  # type: ignore[misc]
    def __init__(
        self, peers: dict[str, str], credentials: grpc.ChannelCredentials | None = None
    ) -> None:
        super().__init__()
        self._peers = dict(peers)
        # The process's own client certificate (mutual TLS), None in plaintext.
        self._credentials = credentials
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._own: set[str] = {""}

    async def set_own(
        self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus
    ) -> None:
        self._own.add(service)
        await self.set(service, status)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        if request.service in self._own or request.service not in self._peers:
            return await super().Check(request, context)
        return health_pb2.HealthCheckResponse(status=await self._ask_peer(request.service))

    async def _ask_peer(self, service: str) -> health_pb2.HealthCheckResponse.ServingStatus:
        address = self._peers[service]
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = (
                grpc.aio.insecure_channel(address)
                if self._credentials is None
                else grpc.aio.secure_channel(address, self._credentials)
            )
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=PEER_CHECK_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as exc:
            log.info("peer %s at %s did not answer: %s", service, address, exc.code().name)
            return health_pb2.HealthCheckResponse.NOT_SERVING
        return reply.status

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
