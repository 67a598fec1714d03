"""The gateway config rendered for the Helm chart (deploy/kubernetes.py envoy-config): the same
template as the local stack, with Kubernetes addresses and a production issuer only."""

from __future__ import annotations

import pytest
import yaml

from deploy import kubernetes
from deploy.stack import gateway


def test_every_service_is_reached_through_its_headless_service() -> None:
    config = yaml.safe_load(kubernetes.example_envoy_config())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for name in gateway.SERVICE_CLUSTERS:
        cluster = clusters[name]
        assert cluster["type"] == "STRICT_DNS"
        (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]
        assert address == {"address": f"{name}-pods", "port_value": 50051}
        assert "grpc_health_check" in cluster["health_checks"][0]
    assert "web" not in clusters


def test_only_the_gateway_listener_leaves_the_pod() -> None:
    text = kubernetes.example_envoy_config()
    config = yaml.safe_load(text)
    listeners = {
        listener["name"]: listener["address"]["socket_address"]["address"]
        for listener in config["static_resources"]["listeners"]
    }
    assert listeners.pop("gateway") == "0.0.0.0"
    assert set(listeners.values()) == {"127.0.0.1"}
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    # A production issuer's keys, never the local development key or its sign-in route.
    assert kubernetes.EXAMPLE_JWKS_URL in text
    assert "local_jwks" not in text and "/dev/token" not in text


def test_a_bad_issuer_url_is_refused_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    status = kubernetes.main(
        [
            "envoy-config",
            "--jwks-url",
            "ftp://auth.example.com/keys",
            "--jwt-issuer",
            "x",
            "--jwt-audience",
            "y",
            "--cors-origin",
            "https://tickets.example.com",
        ]
    )
    assert status == 2
    assert "JWKS URL" in capsys.readouterr().err


def test_the_queue_watch_cluster_reaches_the_queue_pods() -> None:
    config = yaml.safe_load(kubernetes.example_envoy_config())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for name, service in gateway.STREAM_CLUSTERS.items():
        cluster = clusters[name]
        assert cluster["type"] == "STRICT_DNS"
        (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]
        assert address == {"address": f"{service}-pods", "port_value": 50051}
