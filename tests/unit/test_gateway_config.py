"""The gateway's Envoy config is data: it parses back, its routes name clusters that exist, and
the services of the mesh (ticketing_common.mesh) are its clusters and its transcoder's list.
Envoy's own validation of the rendered file is in tests/integration/test_gateway_auth.py."""

import json

import pytest

from deploy.stack import components, envoy_config, gateway
from deploy.stack.state import StackConfig, StateDir
from ticketing_common import mesh, server

PRODUCTION = gateway.GatewaySettings().with_jwt(
    jwks_url="https://id.example.com/.well-known/jwks.json",
    issuer="https://id.example.com/",
    audiences=("tickets-api",),
)


def _render(tmp_path, monkeypatch, settings, descriptor=True):
    if not descriptor:
        monkeypatch.setenv(gateway.DESCRIPTOR_ENV, str(tmp_path / "missing.binpb"))
    else:
        descriptor_file = tmp_path / "descriptor.binpb"
        descriptor_file.write_bytes(b"")
        monkeypatch.setenv(gateway.DESCRIPTOR_ENV, str(descriptor_file))
    config = StackConfig(gateway_port=18080, port_base=17100)
    text = gateway.render(config, StateDir(tmp_path), tmp_path / "jwks.json", settings=settings)
    return json.loads(text)


def _managers(config):
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                yield listener["name"], network_filter["typed_config"]


def _routes(config):
    for _, manager in _managers(config):
        for host in manager["route_config"]["virtual_hosts"]:
            yield from host["routes"]


@pytest.mark.parametrize("settings", [gateway.GatewaySettings(), PRODUCTION], ids=["dev", "prod"])
@pytest.mark.parametrize("descriptor", [True, False], ids=["transcoder", "no-descriptor"])
def test_every_route_names_a_cluster_that_exists(tmp_path, monkeypatch, settings, descriptor):
    config = _render(tmp_path, monkeypatch, settings, descriptor)
    clusters = [c["name"] for c in config["static_resources"]["clusters"]]
    assert len(clusters) == len(set(clusters))
    for route in _routes(config):
        assert "route" in route or "direct_response" in route, route
        if "route" in route:
            assert route["route"]["cluster"] in clusters, route
    for cluster in config["static_resources"]["clusters"]:
        assert cluster["load_assignment"]["cluster_name"] == cluster["name"]
    # The production issuer's keys come from its own cluster.
    assert ("jwks" in clusters) == (settings.jwt.jwks_url is not None)
    # Both listeners end in the router, and transcode only when the descriptor exists.
    for _, manager in _managers(config):
        names = [f["name"] for f in manager["http_filters"]]
        assert names[-1] == "envoy.filters.http.router"
        assert (gateway.TRANSCODER in names) == descriptor


def test_every_service_of_the_mesh_has_a_cluster_a_route_and_rest(tmp_path, monkeypatch):
    config = _render(tmp_path, monkeypatch, gateway.GatewaySettings())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    routed = {r["route"]["cluster"]: r["match"] for r in _routes(config) if "route" in r}
    (transcoder,) = [
        f
        for name, manager in _managers(config)
        if name == "gateway"
        for f in manager["http_filters"]
        if f["name"] == gateway.TRANSCODER
    ]
    assert transcoder["typed_config"]["services"] == list(mesh.PUBLIC_SERVICES)
    ports = StackConfig(gateway_port=18080, port_base=17100).ports
    for service in mesh.SERVICES:
        assert service.cluster in clusters and service.cluster in routed
        endpoint = clusters[service.cluster]["load_assignment"]["endpoints"][0]["lb_endpoints"]
        assert endpoint[0]["endpoint"]["address"]["socket_address"]["port_value"] == ports.of(
            service.component
        )
    assert len(clusters["mesh"]["load_assignment"]["endpoints"][0]["lb_endpoints"]) == len(
        mesh.SERVICES
    )


def test_the_settings_reach_the_config(tmp_path, monkeypatch):
    limits = dict(gateway.LIMITS) | {("read", "user"): gateway.Limit(rate=3, burst=7)}
    settings = gateway.GatewaySettings(limits=limits)
    config = _render(tmp_path, monkeypatch, settings)
    _, manager = next(_managers(config))  # the gateway listener
    by_name = {f["name"]: f["typed_config"] for f in manager["http_filters"]}
    descriptors = by_name["envoy.filters.http.local_ratelimit"]["descriptors"]
    assert len(descriptors) == len(gateway.LIMITS)
    read_user = [
        d["token_bucket"]
        for d in descriptors
        if d["entries"] == [{"key": "class", "value": "read"}, {"key": "user"}]
    ]
    assert read_user == [{"max_tokens": 7, "tokens_per_fill": 3, "fill_interval": "1s"}]
    provider = by_name["envoy.filters.http.jwt_authn"]["providers"]["ticketing"]
    assert provider["local_jwks"] == {"filename": str(tmp_path / "jwks.json")}
    dev_paths = [r["match"].get("path") for r in _routes(config)]
    assert "/dev/token" in dev_paths


def test_the_service_lists_derive_from_the_mesh_table():
    assert server.PUBLIC_SERVICES == tuple(s.grpc_name for s in mesh.SERVICES)
    assert components.MESH == {s.grpc_name: s.component for s in mesh.SERVICES}
    assert set(components.PACKAGES) == {s.component for s in mesh.SERVICES} | set(mesh.WORKERS)
    assert gateway.SERVICE_CLUSTERS == {s.cluster: s.component for s in mesh.SERVICES}


def test_the_gateway_traces_only_when_the_services_do(tmp_path, monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    plain = _render(tmp_path, monkeypatch, gateway.GatewaySettings())
    assert all("tracing" not in manager for _, manager in _managers(plain))

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.local:4318")
    traced = _render(tmp_path, monkeypatch, gateway.GatewaySettings())
    tracing = {name: manager.get("tracing") for name, manager in _managers(traced)}
    assert tracing["gateway"] is not None and tracing["rest-origin"] is None
    exporter = tracing["gateway"]["provider"]["typed_config"]["http_service"]["http_uri"]
    assert exporter["uri"] == "http://collector.local:4318/v1/traces"
    clusters = {c["name"]: c for c in traced["static_resources"]["clusters"]}
    assert clusters[exporter["cluster"]]["type"] == "STRICT_DNS"

    with pytest.raises(gateway.GatewayConfigError):
        gateway.with_tracing(plain, "grpc://collector.local:4317")


@pytest.mark.parametrize("settings", [gateway.GatewaySettings(), PRODUCTION], ids=["dev", "prod"])
def test_only_operators_reach_prometheus_and_only_its_two_query_apis(
    tmp_path, monkeypatch, settings
):
    """The operator dashboard's route: exact GET paths of the two query APIs, to the stack's
    Prometheus, each with the rbac policy that asks the verified token for role operator; the
    JWT filter requires a token under /operator/ before its catch-all rule."""
    config = _render(tmp_path, monkeypatch, settings)
    to_prometheus = [
        r for r in _routes(config) if r.get("route", {}).get("cluster") == "prometheus"
    ]
    assert sorted((r["match"]["path"], r["route"]["prefix_rewrite"]) for r in to_prometheus) == [
        ("/operator/metrics/api/v1/query", "/api/v1/query"),
        ("/operator/metrics/api/v1/query_range", "/api/v1/query_range"),
    ]
    for route in to_prometheus:
        assert "prefix" not in route["match"] and "safe_regex" not in route["match"]
        assert route["match"]["headers"] == [{"name": ":method", "string_match": {"exact": "GET"}}]
        policy = route["typed_per_filter_config"]["envoy.filters.http.rbac"]["rbac"]["rules"]
        assert policy["action"] == "ALLOW"
        (principal,) = policy["policies"]["operator-role"]["principals"]
        assert principal["metadata"]["path"] == [{"key": "jwt_payload"}, {"key": "role"}]
        assert principal["metadata"]["value"] == {"string_match": {"exact": "operator"}}
    (_, manager) = next(m for m in _managers(config) if m[0] == "gateway")
    names = [f["name"] for f in manager["http_filters"]]
    assert names.index("envoy.filters.http.jwt_authn") < names.index("envoy.filters.http.rbac")
    jwt_filter = manager["http_filters"][names.index("envoy.filters.http.jwt_authn")]
    jwt_config = jwt_filter["typed_config"]
    assert jwt_config["providers"]["ticketing"]["payload_in_metadata"] == "jwt_payload"
    rules = [rule["match"] for rule in jwt_config["rules"]]
    operator_rule = rules.index({"prefix": "/operator/"})
    assert operator_rule < rules.index({"prefix": "/"})
    assert jwt_config["rules"][operator_rule]["requires"] == {"provider_name": "ticketing"}
    # The rbac filter enforces nothing elsewhere (no listener-wide rules).
    rbac = manager["http_filters"][names.index("envoy.filters.http.rbac")]["typed_config"]
    assert "rules" not in rbac


def _protocol(cluster):
    options = cluster["typed_extension_protocol_options"]
    return options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]


def test_unary_calls_move_to_new_connections_and_watch_streams_stay(tmp_path, monkeypatch):
    """A service's worker processes share its port, and the kernel places each new upstream
    connection on one of them: the unary clusters open a new connection every
    UNARY_CALLS_PER_CONNECTION calls (so every worker gets some), the queue's watch streams
    have a cluster of their own whose connections carry many and are never recycled."""
    config = _render(tmp_path, monkeypatch, gateway.GatewaySettings())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for service in mesh.SERVICES:
        protocol = _protocol(clusters[service.cluster])
        assert protocol["common_http_protocol_options"] == {
            "max_requests_per_connection": envoy_config.UNARY_CALLS_PER_CONNECTION
        }
        streams = protocol["explicit_http_config"]["http2_protocol_options"]
        assert streams == {"max_concurrent_streams": envoy_config.UNARY_STREAMS_PER_CONNECTION}
    routed = {
        r["match"].get("path"): r["route"]["cluster"] for r in _routes(config) if "route" in r
    }
    assert routed["/ticketing.queue.v1.QueueService/WatchQueue"] == "queue_watch"
    watch = clusters["queue_watch"]
    assert "common_http_protocol_options" not in _protocol(watch)
    assert _protocol(watch)["explicit_http_config"]["http2_protocol_options"] == {
        "max_concurrent_streams": envoy_config.WATCH_STREAMS_PER_CONNECTION
    }
    # The same instances as the queue's cluster, and the same certificate check.
    assert (
        watch["load_assignment"]["endpoints"] == clusters["queue"]["load_assignment"]["endpoints"]
    )
    assert watch["transport_socket"] == clusters["queue"]["transport_socket"]
