"""The gateway as each kind of client reaches it, for the gateway's tests: REST and gRPC-Web over
HTTP/1.1 (optionally from another loopback address, 127.0.0.2 say, to be another client), native
gRPC, and Envoy's access log. Like a browser, REST and gRPC-Web replies are decoded when the
gateway compressed them (content-encoding gzip or br); ``wire_bytes`` is the size as sent."""

from __future__ import annotations

import gzip
import http.client
import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import brotli
import grpc

GRPC_WEB = "application/grpc-web+proto"


@dataclass
class RestReply:
    status: int
    headers: dict[str, str]
    body: dict
    wire_bytes: int = 0

    @property
    def reason(self) -> str | None:
        """The ErrorInfo reason of a google.rpc.Status error body."""
        details = self.body.get("details") or [{}]
        return details[0].get("reason")


@dataclass
class GrpcWebReply:
    http_status: int
    grpc_status: int | None
    grpc_message: str
    messages: list[bytes] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    wire_bytes: int = 0


def decoded(raw: bytes, content_encoding: str | None) -> bytes:
    """A body as the client reads it: the gateway's gzip or brotli (br) undone."""
    coding = (content_encoding or "identity").strip().lower()
    if coding == "gzip":
        return gzip.decompress(raw)
    if coding == "br":
        return brotli.decompress(raw)
    if coding == "identity":
        return raw
    raise AssertionError(f"the gateway sent an unexpected content-encoding: {coding!r}")


def _connection(gateway: str, source: str | None, timeout: float) -> http.client.HTTPConnection:
    host, port = gateway.rsplit(":", 1)
    return http.client.HTTPConnection(
        host, int(port), timeout=timeout, source_address=(source, 0) if source else None
    )


def rest(
    gateway: str,
    method: str,
    path: str,
    body: dict | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    source: str | None = None,
    timeout: float = 30,
) -> RestReply:
    sent = {"content-type": "application/json"} | (headers or {})
    if token:
        sent["authorization"] = f"Bearer {token}"
    connection = _connection(gateway, source, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        wire = response.read()
        reply_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    raw = decoded(wire, reply_headers.get("content-encoding"))
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError:
        parsed = {"raw": raw.decode(errors="replace")}
    return RestReply(response.status, reply_headers, parsed, wire_bytes=len(wire))


def grpc_web(
    gateway: str,
    method: str,
    message: bytes = b"",
    token: str | None = None,
    headers: dict[str, str] | None = None,
    source: str | None = None,
    timeout: float = 30,
) -> GrpcWebReply:
    """One gRPC-Web (binary) call as a browser makes it: a framed request, then data frames and
    a trailer frame, or a trailers-only answer with grpc-status in the headers."""
    sent = {"content-type": GRPC_WEB, "x-grpc-web": "1", "accept": GRPC_WEB} | (headers or {})
    if token:
        sent["authorization"] = f"Bearer {token}"
    connection = _connection(gateway, source, timeout)
    try:
        connection.request(
            "POST", method, body=struct.pack(">BI", 0, len(message)) + message, headers=sent
        )
        response = connection.getresponse()
        wire = response.read()
        reply_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    raw = decoded(wire, reply_headers.get("content-encoding"))
    messages, trailers = [], {}
    while len(raw) >= 5:
        flag, length = struct.unpack(">BI", raw[:5])
        frame, raw = raw[5 : 5 + length], raw[5 + length :]
        if flag & 0x80:
            for line in frame.decode().split("\r\n"):
                if ":" in line:
                    name, value = line.split(":", 1)
                    trailers[name.strip().lower()] = value.strip()
        else:
            messages.append(frame)
    found = trailers | {k: v for k, v in reply_headers.items() if k.startswith("grpc-")}
    status = found.get("grpc-status")
    return GrpcWebReply(
        http_status=response.status,
        grpc_status=int(status) if status is not None else None,
        grpc_message=found.get("grpc-message", ""),
        messages=messages,
        headers=reply_headers,
        wire_bytes=len(wire),
    )


def grpc_status(
    gateway: str,
    method: str,
    message: bytes = b"",
    token: str | None = None,
    metadata: list[tuple[str, str]] | None = None,
    timeout: float = 30,
) -> tuple[grpc.StatusCode, str]:
    """One native gRPC unary call with a raw request; its status code and details."""
    sent = list(metadata or [])
    if token:
        sent.append(("authorization", f"Bearer {token}"))
    with grpc.insecure_channel(gateway) as channel:
        try:
            channel.unary_unary(method)(message, metadata=sent, timeout=timeout)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def access_log(state_dir: Path | str, request_id: str, timeout: float = 10) -> dict:
    """Envoy's JSON access-log line for one request id (it is flushed asynchronously)."""
    log = Path(state_dir) / "logs" / "envoy.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if request_id in line and line.startswith("{"):
                return json.loads(line)
        time.sleep(0.2)
    raise AssertionError(f"no access-log line for {request_id} in {log}")
