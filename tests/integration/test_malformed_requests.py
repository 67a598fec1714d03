"""Requests the servers cannot decode are the caller's fault: every method of every service
answers INVALID_ARGUMENT (reason MALFORMED_REQUEST), never UNKNOWN or INTERNAL, over native gRPC
(straight to each service and through the gateway) and over REST (400), and keeps serving.

The methods and REST routes are read from the contracts themselves, so a method added later is
covered without touching this file."""

import json
import time
import urllib.error
import urllib.request

import grpc
import pytest
from google.api import annotations_pb2
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ticketing.booking.v1 import booking_pb2
from ticketing.catalog.v1 import catalog_pb2
from ticketing.queue.v1 import queue_pb2
from ticketing.search.v1 import search_pb2

from tests.helpers import error_reason, service_channel

pytestmark = pytest.mark.integration

SERVICES: dict[str, ServiceDescriptor] = {
    "catalog": catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"],
    "search": search_pb2.DESCRIPTOR.services_by_name["SearchService"],
    "booking": booking_pb2.DESCRIPTOR.services_by_name["BookingService"],
    "queue": queue_pb2.DESCRIPTOR.services_by_name["QueueService"],
}
METHODS = [(port, m) for port, service in SERVICES.items() for m in service.methods]
BAD_UTF8 = b"\xff\xfe"


def undecodable(method: MethodDescriptor) -> dict[str, bytes]:
    """Payloads that do not parse as the method's request: a length-delimited field that runs
    past the end of the message, and bad UTF-8 in each string field."""
    payloads = {"truncated": b"\x0a\x05ab"}
    for field in method.input_type.fields:
        if field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated:
            tag = bytes([field.number << 3 | 2]) if field.number < 16 else None
            if tag:
                payloads[f"bad utf-8 in {field.name}"] = tag + bytes([len(BAD_UTF8)]) + BAD_UTF8
    return payloads


def call_raw(channel: grpc.Channel, method: MethodDescriptor, payload: bytes, metadata=()):
    """The call, raw bytes in; waits out the gateway's rate limiter (the tests before this one
    may have spent this address's booking bucket), which is not what this test is about."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    for _ in range(40):
        try:
            if method.server_streaming:
                return list(channel.unary_stream(path)(payload, timeout=10, metadata=metadata))
            return channel.unary_unary(path)(payload, timeout=10, metadata=metadata)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            time.sleep(0.25)
    raise AssertionError(f"{path}: still rate limited after 10 s")


def assert_malformed(err: grpc.RpcError, what: str) -> None:
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (what, err.code(), err.details())
    assert error_reason(err) == "MALFORMED_REQUEST", what
    assert "could not be decoded" in err.details(), what


@pytest.mark.parametrize(
    ("port", "method"), METHODS, ids=[f"{m.containing_service.name}.{m.name}" for _, m in METHODS]
)
def test_every_method_refuses_undecodable_bytes_as_invalid_argument(stack, port, method):
    operator = (("authorization", f"Bearer {stack.token('malformed-ops', role='operator')}"),)
    targets = {
        "direct": (lambda: service_channel(stack, port), ()),
        "gateway": (lambda: grpc.insecure_channel(stack.gateway), operator),
    }
    for target, (open_channel, metadata) in targets.items():
        with open_channel() as channel:
            for name, payload in undecodable(method).items():
                with pytest.raises(grpc.RpcError) as err:
                    call_raw(channel, method, payload, metadata)
                assert_malformed(err.value, f"{target}: {name}")
            # The process is still serving after it.
            health = health_pb2_grpc.HealthStub(channel)
            if target == "direct":
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_and_reflection_refuse_undecodable_bytes_too(stack):
    with service_channel(stack, "booking") as channel:
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary("/grpc.health.v1.Health/Check")(b"\x0a\x02\xff\xfe", timeout=10)
        assert_malformed(err.value, "health")
        reflect = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        )
        with pytest.raises(grpc.RpcError) as err:
            list(reflect(iter([b"\x0a\x05ab"]), timeout=10))
        assert_malformed(err.value, "reflection")


def rest_routes() -> list[tuple[str, str, MethodDescriptor]]:
    """(verb, path template, method) of every REST route the contracts declare."""
    routes = []
    for service in SERVICES.values():
        for method in service.methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            verb = rule.WhichOneof("pattern")
            if verb and method.input_type.full_name != "google.api.HttpBody":
                routes.append((verb.upper(), getattr(rule, verb), method))
    return routes


def bad_requests(verb: str, template: str, method: MethodDescriptor) -> dict[str, tuple]:
    """(path, body) pairs with a byte that is not UTF-8 where a string goes."""
    segments = template.split("/")
    variables = [i for i, s in enumerate(segments) if s.startswith("{")]

    def path(bad_at: int | None) -> str:
        out = []
        for i, segment in enumerate(segments):
            if segment.startswith("{"):
                tail = segment.split("}", 1)[1]
                out.append(
                    ("%ff%fe" if i == bad_at else "00000000-0000-0000-0000-000000000000") + tail
                )
            else:
                out.append(segment)
        return "/".join(out)

    cases: dict[str, tuple] = {}
    for i in variables:
        cases[f"path {segments[i]}"] = (path(i), None)
    if verb == "GET":
        for field in method.input_type.fields:
            if field.type == FieldDescriptor.TYPE_STRING:
                cases[f"query {field.json_name}"] = (f"{path(None)}?{field.json_name}=%ff", None)
    else:
        body = method.input_type
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        if rule.body != "*":
            body = body.fields_by_name[rule.body].message_type
        for field in body.fields:
            if field.type == FieldDescriptor.TYPE_STRING:
                raw = b'{"' + field.json_name.encode() + b'": "\xff\xfe"}'
                cases[f"body {field.json_name}"] = (path(None), raw)
    return cases


ROUTES = rest_routes()


@pytest.mark.parametrize(
    ("verb", "template", "method"), ROUTES, ids=[f"{v} {t}" for v, t, _ in ROUTES]
)
def test_every_rest_route_answers_400_to_bytes_that_are_not_utf8(stack, verb, template, method):
    token = stack.token("malformed-rest", role="operator")
    for name, (path, body) in bad_requests(verb, template, method).items():
        request = urllib.request.Request(
            f"http://{stack.gateway}{path}",
            data=body,
            method=verb,
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        )
        for _ in range(40):  # past the gateway's rate limiter, as in call_raw
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
                    status, text = resp.status, resp.read().decode(errors="replace")
            except urllib.error.HTTPError as err:
                status, text = err.code, err.read().decode(errors="replace")
            if status != 429:
                break
            time.sleep(0.25)
        assert status == 400, f"{verb} {path} ({name}): {status} {text}"
        problem = json.loads(text)
        # The service's refusal, or the gateway's own when the JSON body itself is not UTF-8:
        # either way a google.rpc.Status with an ErrorInfo, never a stack trace.
        assert problem["code"] == 3, (name, problem)
        assert problem["details"][0]["reason"] in {"MALFORMED_REQUEST", "BAD_REQUEST"}, problem
