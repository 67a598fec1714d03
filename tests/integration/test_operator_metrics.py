"""The gateway's operator-only route to the stack's Prometheus, which the web client's live sale
dashboard reads: GET /operator/metrics/api/v1/query and .../query_range answer an operator with
Prometheus's own JSON; a plain user gets 403, a caller without a (valid) token 401, and nothing
else of Prometheus's HTTP API (admin, lifecycle, series listings, writes) is reachable."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request

import pytest

from deploy.stack.envoy_config import GATEWAY_ERROR_DOMAIN
from tests.integration.gateway_client import rest

pytestmark = pytest.mark.integration

ROUTE = "/operator/metrics/api/v1"
# Components the stack's Prometheus scrapes (deploy/stack/prometheus.py).
SCRAPED = {"catalog", "search", "booking", "queue", "cdc-worker", "envoy"}


def path(api: str, **params: str) -> str:
    return f"{ROUTE}/{api}?{urllib.parse.urlencode(params)}"


def components(body: dict) -> set[str]:
    return {r["metric"].get("component", "") for r in body["data"]["result"]}


@pytest.fixture(scope="module")
def operator(stack) -> str:
    return stack.token("ops-dashboard", role="operator")


@pytest.fixture(scope="module")
def scraped(stack, operator) -> None:
    """Prometheus has scraped every target at least once (it starts with the stack)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        reply = rest(stack.gateway, "GET", path("query", query="up"), token=operator)
        if reply.status == 200 and SCRAPED <= components(reply.body):
            return
        time.sleep(0.5)
    pytest.fail(f"Prometheus answered no `up` series through the gateway: {reply}")


def test_an_operator_gets_prometheus_answers_to_instant_and_range_queries(stack, operator, scraped):
    instant = rest(stack.gateway, "GET", path("query", query="up"), token=operator)
    assert instant.status == 200, instant
    assert instant.body["status"] == "success"
    assert instant.body["data"]["resultType"] == "vector"
    # The stack's own scrape targets: these are Prometheus's figures of this stack.
    assert SCRAPED <= components(instant.body), instant.body

    end = time.time()
    ranged = rest(
        stack.gateway,
        "GET",
        path(
            "query_range",
            query='up{component="booking"}',
            start=str(end - 60),
            end=str(end),
            step="2",
        ),
        token=operator,
    )
    assert ranged.status == 200, ranged
    assert ranged.body["data"]["resultType"] == "matrix"
    (series,) = ranged.body["data"]["result"]
    assert series["values"] and series["values"][-1][1] == "1"

    # A bad expression is Prometheus's own 400 with its reason, passed through.
    bad = rest(stack.gateway, "GET", path("query", query="sum(("), token=operator)
    assert bad.status == 400, bad
    assert bad.body["status"] == "error" and bad.body["errorType"] == "bad_data"
    print(
        f"\noperator route: {len(instant.body['data']['result'])} `up` series, range 200, bad 400"
    )


def test_a_plain_user_is_refused_with_403(stack, scraped):
    reply = rest(stack.gateway, "GET", path("query", query="up"), token=stack.token("ann"))
    assert reply.status == 403, reply
    assert reply.reason == "PERMISSION_DENIED"
    assert reply.body["details"][0]["domain"] == GATEWAY_ERROR_DOMAIN
    assert "data" not in reply.body
    # A token that claims the role but is not good for this gateway makes no operator either:
    # meant for another audience (jwt_authn: 403), or expired (401).
    elsewhere = stack.token("mallory", role="operator", aud="someone-else")
    expired = stack.token("mallory", role="operator", exp=int(time.time()) - 120)
    for token, status in ((elsewhere, 403), (expired, 401)):
        reply = rest(stack.gateway, "GET", path("query", query="up"), token=token)
        assert reply.status == status and "data" not in reply.body, reply


def test_without_a_token_the_route_is_401(stack, scraped):
    for api in ("query", "query_range"):
        reply = rest(stack.gateway, "GET", path(api, query="up"))
        assert reply.status == 401, (api, reply)
        assert reply.reason == "UNAUTHENTICATED"


def test_nothing_but_the_two_query_apis_is_reachable(stack, operator, scraped):
    """An operator's token opens the two read APIs, nothing else of Prometheus: its admin and
    lifecycle endpoints (the stack runs it with --web.enable-lifecycle) stay out of reach."""
    refused = [
        ("GET", f"{ROUTE}/series?match[]=up"),
        ("GET", f"{ROUTE}/labels"),
        ("GET", f"{ROUTE}/status/config"),
        ("GET", f"{ROUTE}/targets"),
        ("POST", f"{ROUTE}/admin/tsdb/snapshot"),
        ("POST", f"{ROUTE}/admin/tsdb/delete_series?match[]=up"),
        ("GET", f"{ROUTE}/query/../status/config"),
        ("GET", f"{ROUTE}/query_exemplars?query=up"),
        # The query APIs by POST (a form body): only GET is routed.
        ("POST", f"{ROUTE}/query"),
        ("POST", "/operator/metrics/-/quit"),
        ("POST", "/operator/metrics/-/reload"),
        ("GET", "/operator/metrics/graph"),
        ("GET", "/api/v1/query?query=up"),
    ]
    for method, where in refused:
        reply = rest(stack.gateway, method, where, token=operator)
        assert reply.status == 404, (method, where, reply)
        assert reply.reason == "NO_ROUTE"
    # Prometheus itself is still up and answering (none of the above reached it).
    url = f"http://127.0.0.1:{stack.ports['prometheus']}/-/ready"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
    assert rest(stack.gateway, "GET", path("query", query="up"), token=operator).status == 200
