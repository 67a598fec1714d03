"""The gateway's Envoy config, as data: ``build()`` returns the whole bootstrap as dicts and
lists, which ``deploy/stack/gateway.py`` dumps once (``json.dumps``) into
``<state>/envoy/envoy.yaml`` at every ``ticketing up``. JSON is YAML, so Envoy reads the file
as it would a hand-written one; do not edit the rendered file, edit this one.

Why Python and not a YAML template: the parts that vary (ports, the services of the mesh, the
JWT issuer, the rate limits, the local replies, the transcoder that needs ``make gen``) are
data, and the project has no YAML library, so a template could only be filled by gluing text
at the right indentation. Here every part is a value built by a function, a mistake is a
Python error or a failing unit test (``tests/unit/test_gateway_config.py``) rather than a
surprise at Envoy's start, and the services come from one table (``ticketing_common.mesh``).
The keys are Envoy's own (v3 API, snake_case), in the order of its documentation's examples.

One listener speaks HTTP/1.1 and h2c, so native gRPC, gRPC-Web and REST (JSON, transcoded by
Envoy from the google.api.http annotations) all arrive on the same port, and so does the
browser client (web/), served from the same origin. Every request passes, in order:

  header_mutation -> cors -> compressor (brotli, gzip) -> grpc_web -> jwt_authn -> rbac
    -> local_ratelimit -> cache -> transcoder

Responses pass the same filters in the opposite order, so the compressor sees them last: JSON
made by the transcoder, gRPC-Web framed by grpc_web, pages served from the cache (see there).

The gateway's own refusals reach each kind of caller in its own terms: gRPC statuses for gRPC
and gRPC-Web, JSON shaped like the services' errors for REST (see ``local_reply_mappers``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ticketing_common import mesh
from ticketing_common.tls import TlsFiles, identity_of

from .ports import HOST, instances
from .state import StackConfig

if TYPE_CHECKING:
    from .gateway import GatewaySettings, JwtSettings, Limit

Data = dict[str, Any]

# Envoy cluster -> the stack component (and port) that serves it.
SERVICE_CLUSTERS = {service.cluster: service.component for service in mesh.SERVICES}
# Clusters of long-lived streams -> the service cluster whose instances they reach. A watch
# stream stays on its connection for as long as the buyer waits, so its cluster packs many on
# one connection and never recycles them; the service's own cluster carries the unary calls.
STREAM_CLUSTERS = {"queue_watch": "queue"}
# Unary calls per upstream connection before Envoy drains it and opens a new one. A service's
# worker processes share its port (TICKETING_WORKERS, SO_REUSEPORT) and the kernel places each
# new connection on one of them: without recycling, the pool's first connections (opened
# before a second worker listened, or hashed to the same one) would carry every call for
# hours. A new TLS connection every 200 calls cost nothing measurable (CPU per join,
# bench/RESULTS.md, 2026-12-04). A stream counts as a call too: the catalog's WatchAvailability
# streams stay on the catalog cluster, and a drained connection keeps its streams until they end.
UNARY_CALLS_PER_CONNECTION = 200
# Unary calls in flight on one upstream connection before Envoy opens another.
UNARY_STREAMS_PER_CONNECTION = 32
# Watch streams on one upstream connection.
WATCH_STREAMS_PER_CONNECTION = 1000

# The rate-limit classes (see the local_ratelimit filter) and the keys each has a bucket per.
CLASSES = ("booking", "queue", "read")
KEYS = ("user", "address")

TRANSCODER = "envoy.filters.http.grpc_json_transcoder"


class GatewayConfigError(RuntimeError):
    """The Envoy config cannot be built or does not validate."""


def _typed(type_name: str, **fields: Any) -> Data:
    """A typed_config: ``type_name`` is the proto message's full name."""
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


def _address(port: int, host: str = HOST) -> Data:
    return {"socket_address": {"address": host, "port_value": port}}


def _load_assignment(cluster: str, ports: list[int], host: str = HOST) -> Data:
    return {
        "cluster_name": cluster,
        "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _address(p, host)}} for p in ports]}
        ],
    }


# Per gRPC method counts and latencies at the edge (cluster.<c>.grpc.<service>.<method>.*),
# for gRPC, gRPC-Web and transcoded REST calls alike (it sits after the transcoder), scraped by
# the stack's Prometheus from /stats/prometheus.
GRPC_STATS = {
    "name": "envoy.filters.http.grpc_stats",
    "typed_config": _typed(
        "envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
        stats_for_all_methods=True,
        enable_upstream_stats=True,
    ),
}

_ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router"),
}


# -- the whole config ------------------------------------------------------------------------


def build(
    config: StackConfig,
    settings: GatewaySettings,
    jwks: Path,
    descriptor: Path | None,
    tls: TlsFiles | None = None,
) -> Data:
    """The Envoy bootstrap for this stack; ``descriptor`` None leaves REST transcoding out;
    ``tls`` is the gateway's client certificate towards the services (mutual TLS; None:
    plaintext upstreams)."""
    ports = config.ports
    return {
        "admin": {
            # Loopback only: the admin interface can stop the server and dump its config.
            "address": _address(ports.of("envoy-admin"), "127.0.0.1"),
        },
        # A ceiling on open client connections (a dev stack; also silences Envoy's warning).
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": _typed(
                        "envoy.extensions.resource_monitors.downstream_connections.v3."
                        "DownstreamConnectionsConfig",
                        max_active_downstream_connections=10000,
                    ),
                }
            ]
        },
        "static_resources": {
            "listeners": [
                gateway_listener(config, settings, jwks, descriptor),
                rest_origin_listener(config, descriptor),
            ],
            "clusters": clusters(config, settings, tls),
        },
    }


def _http_connection_manager(listener: str, port: int, manager: Data) -> Data:
    return {
        "name": listener,
        "address": _address(port, "127.0.0.1"),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": _typed(
                            "envoy.extensions.filters.network.http_connection_manager.v3."
                            "HttpConnectionManager",
                            **manager,
                        ),
                    }
                ]
            }
        ],
    }


# -- the gateway listener --------------------------------------------------------------------


def gateway_listener(
    config: StackConfig, settings: GatewaySettings, jwks: Path, descriptor: Path | None
) -> Data:
    filters = [
        HEADER_MUTATION,
        {"name": "envoy.filters.http.cors", "typed_config": _typed(_CORS_TYPE)},
        *COMPRESSORS,
        {
            "name": "envoy.filters.http.grpc_web",
            "typed_config": _typed("envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"),
        },
        jwt_authn(settings.jwt, jwks),
        RBAC,
        local_ratelimit(settings.limits),
        CACHE,
        *_transcoder(descriptor),
        GRPC_STATS,
        _ROUTER,
    ]
    return _http_connection_manager(
        "gateway",
        config.gateway_port,
        {
            "stat_prefix": "gateway",
            "codec_type": "AUTO",
            # The gateway is the edge: the client address is the TCP peer, never a claim in an
            # X-Forwarded-For header (Envoy appends the peer to it instead of trusting it). The
            # per-address rate limits key on this address.
            "use_remote_address": True,
            "xff_num_trusted_hops": 0,
            # Clients may bring their own request id; Envoy makes one otherwise. Services log it.
            "generate_request_id": True,
            "preserve_external_request_id": True,
            "always_set_request_id_in_response": True,
            "stream_idle_timeout": "3600s",
            "access_log": [ACCESS_LOG],
            "local_reply_config": {"mappers": local_reply_mappers()},
            "route_config": {
                "name": "gateway",
                # The web client's pages are small, but Envoy's default limit is 4 KiB.
                "max_direct_response_body_size_bytes": 65536,
                "virtual_hosts": [
                    {
                        "name": "ticketing",
                        "domains": ["*"],
                        "typed_per_filter_config": {
                            "envoy.filters.http.cors": cors_policy(config.origins)
                        },
                        "routes": routes(settings.jwt),
                    }
                ],
            },
            "http_filters": filters,
        },
    )


ACCESS_LOG = {
    "name": "envoy.access_loggers.stdout",
    "typed_config": _typed(
        "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        log_format={
            "json_format": {
                "time": "%START_TIME%",
                "request_id": "%REQ(X-REQUEST-ID)%",
                "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                "method": "%REQ(:METHOD)%",
                "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                "grpc_path": "%REQ(:PATH)%",
                "protocol": "%PROTOCOL%",
                "content_type": "%REQ(CONTENT-TYPE)%",
                "status": "%RESPONSE_CODE%",
                "grpc_status": "%GRPC_STATUS%",
                "flags": "%RESPONSE_FLAGS%",
                "details": "%RESPONSE_CODE_DETAILS%",
                "user": "%REQ(X-TICKETING-USER)%",
                "role": "%REQ(X-TICKETING-ROLE)%",
                "upstream": "%UPSTREAM_CLUSTER%",
                "upstream_host": "%UPSTREAM_HOST%",
                "duration_ms": "%DURATION%",
                "bytes_received": "%BYTES_RECEIVED%",
                "bytes_sent": "%BYTES_SENT%",
                "user_agent": "%REQ(USER-AGENT)%",
            }
        },
    ),
}

_CORS_TYPE = "envoy.extensions.filters.http.cors.v3.Cors"


def cors_policy(origins: list[str]) -> Data:
    return _typed(
        "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        allow_origin_string_match=[{"exact": origin} for origin in origins],
        allow_methods="GET, POST, PUT, PATCH, DELETE, OPTIONS",
        allow_headers=(
            "authorization, content-type, x-grpc-web, x-user-agent, grpc-timeout, x-request-id, "
            "connect-protocol-version, connect-timeout-ms"
        ),
        expose_headers=(
            "grpc-status, grpc-message, grpc-status-details-bin, x-request-id, "
            "x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset"
        ),
        max_age="600",
    )


def _method_is(method: str) -> Data:
    return {"name": ":method", "string_match": {"exact": method}}


def _route(match: Data, cluster: str, timeout: str, **more: Any) -> Data:
    return {"match": match, "route": {"cluster": cluster, "timeout": timeout, **more}}


# A call whose connection to an instance failed never reached it, so it is tried again on
# another instance (one that just died, before the health check has seen it go: `ticketing up
# --replicas`). Nothing that may have run is retried.
RETRY_UNSENT: Data = {
    "retry_on": "connect-failure,refused-stream,reset-before-request",
    "num_retries": 2,
    "retry_host_predicate": [
        {
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": _typed(
                "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
            ),
        }
    ],
    "host_selection_retry_max_attempts": 3,
}


def routes(jwt: JwtSettings) -> list[Data]:
    """The gateway's routes, first match wins."""
    return [
        # The waiting room's stream has no timeout (and a long idle timeout).
        _route(
            {"path": "/ticketing.queue.v1.QueueService/WatchQueue"},
            "queue_watch",
            "0s",
            idle_timeout="3600s",
        ),
        # So has the seat map's live availability (gRPC, gRPC-Web and its REST form, routed
        # by the gRPC path the transcoder gives it).
        _route(
            {"path": "/ticketing.catalog.v1.CatalogService/WatchAvailability"},
            "catalog",
            "0s",
            idle_timeout="3600s",
        ),
        # Every service of the mesh, with its own timeout. REST calls are routed here too, by
        # their gRPC path, once the transcoder has rewritten them.
        *(
            _route(
                {"prefix": f"/{service.grpc_name}/"},
                service.cluster,
                service.timeout,
                retry_policy=RETRY_UNSENT,
            )
            for service in mesh.SERVICES
        ),
        # The REST event page (GetEvent). The HTTP cache filter serves it while fresh and fills
        # misses from the REST origin listener (rest_origin_listener).
        _route(
            {"safe_regex": {"regex": "^/event/[^/]+$"}, "headers": [_method_is("GET")]},
            "catalog_rest",
            "15s",
        ),
        # Any service answers reflection for all four and health for the whole mesh.
        _route({"prefix": "/grpc.reflection."}, "mesh", "0s", idle_timeout="300s"),
        _route({"prefix": "/grpc.health.v1.Health/"}, "mesh", "0s", idle_timeout="3600s"),
        # The browser client (web/), served from the gateway's own origin, so its gRPC-Web
        # calls need no CORS.
        _route({"path": "/"}, "web", "10s"),
        _route({"prefix": "/app/"}, "web", "10s"),
        # Development sign-in: a token from the local stack's key (never in production).
        *([_route({"path": "/dev/token"}, "web", "10s")] if jwt.development else []),
        # The operator's live sale dashboard (web/src/views/dashboard.ts) reads Prometheus.
        *operator_metrics_routes(),
        # Browser preflights to REST paths: answered by the cors filter, which needs a route
        # with an upstream (the cluster is never called for a preflight).
        _route(
            {
                "prefix": "/",
                "headers": [
                    _method_is("OPTIONS"),
                    {"name": "access-control-request-method", "present_match": True},
                ],
            },
            "mesh",
            "5s",
        ),
        # Everything else: REST calls (which the transcoder rewrites to a gRPC path and routes
        # again) and unknown paths, which get a JSON 404, not a reset. The HTTP cache is off
        # here: it would try to fetch REST reads from this route itself.
        {
            "match": {"prefix": "/"},
            "direct_response": {
                "status": 404,
                "body": {
                    "inline_string": (
                        "no such route on the ticketing gateway (REST: check the method, "
                        "the path and the query parameters)"
                    )
                },
            },
            "typed_per_filter_config": {
                "envoy.filters.http.cache": _typed(
                    "envoy.config.route.v3.FilterConfig", disabled=True
                )
            },
        },
    ]


# -- the gateway's filters, in order ---------------------------------------------------------

# Callers never choose who they are: drop the identity headers before jwt_authn sets them. And
# remember the content type the client sent (grpc_web and the transcoder rewrite it) so that
# local_reply_config can tell gRPC-Web callers from native gRPC and REST ones (services ignore
# this header).
CLIENT_CONTENT_TYPE = "x-ticketing-content-type"
HEADER_MUTATION = {
    "name": "envoy.filters.http.header_mutation",
    "typed_config": _typed(
        "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        mutations={
            "request_mutations": [
                {"remove": "x-ticketing-user"},
                {"remove": "x-ticketing-role"},
                {"remove": CLIENT_CONTENT_TYPE},
                {
                    "append": {
                        "header": {"key": CLIENT_CONTENT_TYPE, "value": "%REQ(CONTENT-TYPE)%"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                },
            ]
        },
    ),
}

# Response compression, negotiated by Accept-Encoding: brotli (br) or gzip, for REST JSON,
# gRPC-Web and the web client's pages; never native gRPC (application/grpc is not in the list:
# gRPC compresses its own messages, grpc-accept-encoding), nor bodies under 1 KiB (when their
# length is known), nor a response that is already encoded or says "cache-control:
# no-transform". A client that sends no Accept-Encoding gets identity.
#
# Choosing: Envoy takes the accepted coding with the highest q-value among these two filters;
# on a tie ("gzip, deflate, br", as browsers send), the filter with choose_first wins, which is
# brotli here. "identity" or "br;q=0, gzip;q=0" means no compression. Compressible responses
# carry "vary: accept-encoding", compressed or not, so caches in front of the gateway keep the
# variants apart. Envoy drops a strong ETag from a response it compresses (the catalog's page
# ETags are strong), so compressed pages carry none.
#
# Why here, before the cache: responses leave the cache towards the client through the
# compressor, so the cache holds one identity copy of a page and every response, hit or miss,
# is compressed for its own caller's Accept-Encoding. Correctness comes for free: a client
# without Accept-Encoding can never be served a compressed copy, and one cached page serves
# every coding (no variant per Accept-Encoding spelling, so no extra misses). The price is CPU:
# the page is compressed once per response rather than once per second (the hot 14.8 MB page,
# measured by curl on a 2-core machine: 0.09 s a response with gzip, 0.13-0.16 s with brotli,
# 0.02 s without). The other order stores compressed variants: the compressors on the REST
# origin listener, the cache keyed on "vary: accept-encoding" (allowed_vary_headers). Tried
# with Envoy 1.40: the cache filter crashed Envoy (segmentation fault) on the second request
# for a page stored with a Vary header (envoyproxy/envoy#40469, "Crash in cache filter": any
# Vary header with allowed_vary_headers set, open), so it waits for a fixed Envoy (and, to
# keep misses few, for Accept-Encoding normalised to a handful of values). cache_v2 does not
# implement allowed_vary_headers yet.
#
# The gzip filter, the last of the two, removes Accept-Encoding from the request, so nothing
# behind the gateway (the cache's origin, the services, the web client's server) compresses on
# its own.
_COMPRESSIBLE = {
    "min_content_length": 1024,
    # By prefix, so "; charset=..." and every gRPC-Web form (+proto, -text) match;
    # "application/grpc-web" is no prefix of native gRPC's "application/grpc".
    "content_type_matcher": [
        {"prefix": content_type}
        for content_type in (
            "application/json",
            "application/grpc-web",
            "text/html",
            "text/css",
            "text/javascript",
            "application/javascript",
            "text/plain",
        )
    ],
}
_COMPRESSOR = "envoy.extensions.filters.http.compressor.v3.Compressor"
COMPRESSORS = [
    {
        "name": "envoy.filters.http.compressor.brotli",
        "typed_config": _typed(
            _COMPRESSOR,
            response_direction_config={"common_config": _COMPRESSIBLE},
            choose_first=True,
            compressor_library={
                "name": "brotli",
                "typed_config": _typed(
                    "envoy.extensions.compression.brotli.compressor.v3.Brotli",
                    # Measured on the hot demo page (14.8 MB of JSON, window 18): quality 3
                    # (Envoy's default) 1.69 MB, 4 1.62 MB in 1.6x the time, 5 and 6 larger and
                    # slower.
                    quality=4,
                ),
            },
        ),
    },
    {
        "name": "envoy.filters.http.compressor.gzip",
        "typed_config": _typed(
            _COMPRESSOR,
            response_direction_config={
                "common_config": _COMPRESSIBLE,
                "remove_accept_encoding_header": True,
            },
            compressor_library={
                "name": "gzip",
                "typed_config": _typed(
                    "envoy.extensions.compression.gzip.compressor.v3.Gzip",
                    # zlib's own defaults (Envoy's are a 4 KiB window and less memory).
                    window_bits=15,
                    memory_level=8,
                ),
            },
        ),
    },
]

_REQUIRED = {"provider_name": "ticketing"}


def jwt_authn(jwt: JwtSettings, jwks: Path) -> Data:
    """Who the caller is: a verified JWT's sub and role become x-ticketing-user and -role."""
    provider: Data = {"issuer": jwt.issuer, "audiences": list(jwt.audiences)}
    if jwt.jwks_url is None:
        provider["local_jwks"] = {"filename": str(jwks)}
    else:
        provider["remote_jwks"] = {
            "http_uri": {"uri": jwt.jwks_url, "cluster": "jwks", "timeout": "5s"},
            "cache_duration": "600s",
            "async_fetch": {},
            "retry_policy": {"num_retries": 3},
        }
    provider["forward"] = False
    # The verified claims, for the rbac filter's role check on the operator routes.
    provider["payload_in_metadata"] = JWT_PAYLOAD
    provider["claim_to_headers"] = [
        {"header_name": "x-ticketing-user", "claim_name": "sub"},
        {"header_name": "x-ticketing-role", "claim_name": "role"},
    ]
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": _typed(
            "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            bypass_cors_preflight=True,
            providers={"ticketing": provider},
            rules=[
                # Booking and the queue need a caller, over gRPC, gRPC-Web and REST alike.
                {
                    "match": {"prefix": "/ticketing.booking.v1.BookingService/"},
                    "requires": _REQUIRED,
                },
                {"match": {"prefix": "/ticketing.queue.v1.QueueService/"}, "requires": _REQUIRED},
                {"match": {"prefix": "/booking/"}, "requires": _REQUIRED},
                {"match": {"path": "/bookings"}, "requires": _REQUIRED},
                {"match": {"prefix": "/queue/"}, "requires": _REQUIRED},
                # The operator routes (operator_metrics_routes): a caller, whose role the
                # rbac filter then checks.
                {"match": {"prefix": OPERATOR_PREFIX}, "requires": _REQUIRED},
                # The catalog's operator methods need a caller too (the catalog then checks the
                # role): the Create*/Update*/GenerateTickets gRPC methods and every REST write.
                {
                    "match": {
                        "safe_regex": {
                            "regex": r"^/ticketing\.catalog\.v1\.CatalogService/"
                            r"(Create|Update|Generate)[A-Za-z]*$"
                        }
                    },
                    "requires": _REQUIRED,
                },
                {
                    "match": {
                        "safe_regex": {"regex": "^/(venues|performers|events|event/).*"},
                        "headers": [
                            {
                                "name": ":method",
                                "string_match": {"safe_regex": {"regex": "POST|PUT|PATCH|DELETE"}},
                            }
                        ],
                    },
                    "requires": _REQUIRED,
                },
                # Elsewhere (reads, search, health, reflection, the Stripe webhook, which
                # checks its own signature, the web client) a token is optional, but one that
                # is present must be valid.
                {
                    "match": {"prefix": "/"},
                    "requires": {
                        "requires_any": {"requirements": [_REQUIRED, {"allow_missing": {}}]}
                    },
                },
            ],
        ),
    }


# -- the operator routes -----------------------------------------------------------------------
#
# The live sale dashboard of the web client asks the stack's Prometheus server, through the
# gateway, for the sale's figures: GET /operator/metrics/api/v1/query and .../query_range, and
# nothing else of Prometheus's API (no admin, no series or label listings, no config, no
# writes; any other path under /operator/ is the gateway's 404). Only for operators: jwt_authn
# requires a token there (none: 401), and the rbac filter lets through only a token whose
# ``role`` claim is ``operator`` (others: 403). Both refusals reach REST callers as the
# gateway's JSON errors (local_reply_mappers). The token is not forwarded to Prometheus.

OPERATOR_PREFIX = "/operator/"
OPERATOR_METRICS = "/operator/metrics"
# The Prometheus HTTP API paths the dashboard may read (instant and range queries).
PROMETHEUS_APIS = ("/api/v1/query", "/api/v1/query_range")
PROMETHEUS_CLUSTER = "prometheus"
OPERATOR_ROLE = "operator"
# Where jwt_authn puts the verified claims (dynamic metadata of its filter).
JWT_PAYLOAD = "jwt_payload"
_RBAC = "envoy.filters.http.rbac"

# The rbac filter enforces nothing by itself (no listener-wide rules); routes that need a role
# carry their policy in typed_per_filter_config (OPERATOR_ONLY).
RBAC = {"name": _RBAC, "typed_config": _typed("envoy.extensions.filters.http.rbac.v3.RBAC")}

OPERATOR_ONLY = _typed(
    "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
    rbac={
        "rules": {
            "action": "ALLOW",
            "policies": {
                "operator-role": {
                    "permissions": [{"any": True}],
                    "principals": [
                        {
                            "metadata": {
                                "filter": "envoy.filters.http.jwt_authn",
                                "path": [{"key": JWT_PAYLOAD}, {"key": "role"}],
                                "value": {"string_match": {"exact": OPERATOR_ROLE}},
                            }
                        }
                    ],
                }
            },
        }
    },
)


def operator_metrics_routes() -> list[Data]:
    """GET /operator/metrics/api/v1/{query,query_range} -> Prometheus, operators only."""
    return [
        {
            # An exact path (the query string is not part of it): no prefix tricks reach
            # another API.
            "match": {"path": OPERATOR_METRICS + api, "headers": [_method_is("GET")]},
            "route": {"cluster": PROMETHEUS_CLUSTER, "timeout": "10s", "prefix_rewrite": api},
            "typed_per_filter_config": {
                _RBAC: OPERATOR_ONLY,
                "envoy.filters.http.cache": _typed(
                    "envoy.config.route.v3.FilterConfig", disabled=True
                ),
            },
        }
        for api in PROMETHEUS_APIS
    ]


# Rate limits, decided on the original path (before the transcoder rewrites REST calls), in
# three classes: booking, queue and everything else ("read"). Each class has a token bucket per
# verified user (x-ticketing-user, set by jwt_authn just before) and one per client address
# (the TCP peer); a request must find a token in every bucket it maps to. Booking is the
# strictest. Over the limit: 429 for REST, RESOURCE_EXHAUSTED for gRPC and gRPC-Web. The
# numbers come from the gateway settings (gateway.LIMITS).
_CLASS_PATHS = {
    # booking: the BookingService and its REST paths.
    "booking": r"/(ticketing\.booking\.v1\.BookingService/|booking/).*|/bookings([?].*)?",
    # queue: the QueueService and its REST paths.
    "queue": r"/(ticketing\.queue\.v1\.QueueService/|queue/).*",
    # read: everything that is neither (catalog, search, health, the web client...).
    "read": r"/(ticketing\.(booking|queue)\.v1\.|booking/|queue/).*|/bookings([?].*)?",
}
# A descriptor entry's key per bucket key, and the action that produces it.
_KEY_ENTRY = {"user": "user", "address": "remote_address"}
_KEY_ACTION: dict[str, Data] = {
    "user": {"request_headers": {"header_name": "x-ticketing-user", "descriptor_key": "user"}},
    "address": {"remote_address": {}},
}


def _class_action(klass: str) -> Data:
    match: Data = {"descriptor_key": "class", "descriptor_value": klass}
    if klass == "read":
        match["expect_match"] = False  # the paths of the other classes
    match["headers"] = [
        {"name": ":path", "string_match": {"safe_regex": {"regex": _CLASS_PATHS[klass]}}}
    ]
    return {"header_value_match": match}


def local_ratelimit(limits: dict[tuple[str, str], Limit]) -> Data:
    return {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": _typed(
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            stat_prefix="gateway_rate_limit",
            # Requests that map to no descriptor below (none: every request has a class and an
            # address) would share this bucket; it is never the one that refuses.
            token_bucket={
                "max_tokens": 1000000,
                "tokens_per_fill": 1000000,
                "fill_interval": "1s",
            },
            always_consume_default_token_bucket=False,
            filter_enabled={
                "runtime_key": "gateway_rate_limit_enabled",
                "default_value": {"numerator": 100, "denominator": "HUNDRED"},
            },
            filter_enforced={
                "runtime_key": "gateway_rate_limit_enforced",
                "default_value": {"numerator": 100, "denominator": "HUNDRED"},
            },
            rate_limited_as_resource_exhausted=True,
            enable_x_ratelimit_headers="DRAFT_VERSION_03",
            # Buckets kept per wildcard descriptor (users or addresses seen recently).
            max_dynamic_descriptors=100000,
            rate_limits=[
                {"actions": [_class_action(klass), _KEY_ACTION[key]]}
                for klass in CLASSES
                for key in KEYS
            ],
            # One wildcard descriptor per (class, key): a bucket per user or address seen.
            descriptors=[
                {
                    "entries": [{"key": "class", "value": klass}, {"key": _KEY_ENTRY[key]}],
                    "token_bucket": {
                        "max_tokens": limits[(klass, key)].burst,
                        "tokens_per_fill": limits[(klass, key)].rate,
                        "fill_interval": "1s",
                    },
                }
                for klass in CLASSES
                for key in KEYS
            ],
        ),
    }


# The CDN role of the seed design: an HTTP cache in front of the transcoder, so a surge of REST
# event-page views costs the catalog one request per page per second. It stores only what
# upstreams mark cacheable: the event page says "cache-control: public, max-age=1", the
# staleness bound of the event view.
#
# When the copy expires, every request that arrives before the new copy is in goes to the
# origin (this filter does not coalesce misses); the catalog keeps the printed JSON of each
# page version (GetEventPage), so such a miss costs a copy; and a miss for a copy that is still
# the page's version costs a 304 (the cache revalidates with If-None-Match: NOT_MODIFIED, on
# the REST origin listener). Envoy 1.40's cache_v2 filter
# (envoy.extensions.filters.http.cache_v2.v3.CacheV2Config, work in progress upstream) does
# coalesce them, one upstream request per page, and measured 188 req/s on the 20,000-ticket
# page; but it crashed Envoy (segmentation fault) within seconds of 64 wrk connections closing
# mid-body, so it is not used.
CACHE = {
    "name": "envoy.filters.http.cache",
    "typed_config": _typed(
        "envoy.extensions.filters.http.cache.v3.CacheConfig",
        typed_config=_typed(
            "envoy.extensions.http.cache.simple_http_cache.v3.SimpleHttpCacheConfig"
        ),
    ),
}


def _transcoder(descriptor: Path | None) -> list[Data]:
    """REST <-> gRPC for every service of the mesh; none while gen/descriptor.binpb is missing."""
    if descriptor is None:
        return []
    return [
        {
            "name": TRANSCODER,
            "typed_config": _typed(
                "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
                proto_descriptor=str(descriptor),
                services=list(mesh.PUBLIC_SERVICES),
                convert_grpc_status=True,
                ignore_unknown_query_parameters=False,
                # An event page with every ticket is several MB; the services allow 32 MiB.
                max_request_body_size=4194304,
                max_response_body_size=67108864,
                print_options={
                    "always_print_primitive_fields": True,
                    "preserve_proto_field_names": False,
                    "add_whitespace": False,
                },
            ),
        }
    ]


# -- the gateway's own refusals --------------------------------------------------------------
#
# The gateway's own refusals (401 and 403 from jwt_authn, 429 from the rate limiter, 503 when a
# service is down, 404 for unknown paths, transcoding errors):
# - native gRPC callers get them from Envoy as grpc-status / grpc-message;
# - gRPC-Web callers the same way, HTTP 200 with grpc-status in the headers (Envoy alone would
#   answer e.g. HTTP 429, which gRPC-Web clients read as UNAVAILABLE);
# - REST callers get JSON shaped like the services' errors: a google.rpc.Status whose code is
#   the gRPC code, with an ErrorInfo (domain gateway.ticketing.dev) naming the reason, under
#   the HTTP status.
# Who is who: the content type the client sent (x-ticketing-content-type, see
# HEADER_MUTATION), since grpc_web and the transcoder rewrite content-type.


@dataclass(frozen=True)
class Refusal:
    """A refusal's HTTP status -> what a REST caller reads in its JSON body (the gRPC code and
    ErrorInfo reason of a google.rpc.Status), and the gRPC status and message of gRPC-Web."""

    rest_code: int
    reason: str
    grpc_code: int
    message: str


REFUSALS: dict[int, Refusal] = {
    400: Refusal(3, "BAD_REQUEST", 3, "bad request"),
    401: Refusal(16, "UNAUTHENTICATED", 16, "a valid bearer token is required"),
    403: Refusal(7, "PERMISSION_DENIED", 7, "the token is not allowed here"),
    404: Refusal(5, "NO_ROUTE", 12, "no such method on the gateway"),
    413: Refusal(8, "REQUEST_TOO_LARGE", 8, "request too large"),
    429: Refusal(8, "RATE_LIMITED", 8, "rate limit exceeded, slow down"),
    503: Refusal(14, "SERVICE_UNAVAILABLE", 14, "the service is unavailable"),
    504: Refusal(4, "UPSTREAM_TIMEOUT", 4, "the service did not answer in time"),
}
GATEWAY_ERROR_DOMAIN = "gateway.ticketing.dev"


def _status_is(status: int) -> Data:
    return {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": status, "runtime_key": f"gateway_reply_{status}"},
            }
        }
    }


def _client_sent(prefix: str, invert: bool = False) -> Data:
    """The client's own content type starts with ``prefix`` (``invert``: does not)."""
    header: Data = {"name": CLIENT_CONTENT_TYPE, "string_match": {"prefix": prefix}}
    if invert:
        header |= {"treat_missing_header_as_empty": True, "invert_match": True}
    return {"header_filter": {"header": header}}


_IS_GRPC_WEB = _client_sent("application/grpc-web")
# Neither gRPC nor gRPC-Web.
_IS_REST = _client_sent("application/grpc", invert=True)


def _both(*filters: Data) -> Data:
    return {"and_filter": {"filters": list(filters)}}


def _rest_body(code: int, reason: str, metadata: dict[str, str]) -> Data:
    return {
        "json_format": {
            "code": code,
            "message": "%LOCAL_REPLY_BODY%",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": reason,
                    "domain": GATEWAY_ERROR_DOMAIN,
                    "metadata": metadata
                    | {"request_id": "%REQ(X-REQUEST-ID)%", "cause": "%RESPONSE_CODE_DETAILS%"},
                }
            ],
        }
    }


def _set_header(key: str, value: str) -> Data:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def local_reply_mappers(rest_only: bool = False) -> list[Data]:
    """local_reply_config mappers: gRPC-Web refusals as gRPC statuses, REST ones as JSON
    (``rest_only``: every caller is a REST one, as on the REST origin listener)."""
    mappers: list[Data] = []
    for status, refusal in REFUSALS.items():
        rest_body = _rest_body(refusal.rest_code, refusal.reason, {"http_status": str(status)})
        if rest_only:
            mappers.append({"filter": _status_is(status), "body_format_override": rest_body})
            continue
        mappers.append(
            {
                "filter": _both(_IS_GRPC_WEB, _status_is(status)),
                "status_code": 200,
                "headers_to_add": [
                    _set_header("grpc-status", str(refusal.grpc_code)),
                    _set_header("grpc-message", f"{refusal.message} (%RESPONSE_CODE_DETAILS%)"),
                ],
                "body": {"inline_string": ""},
            }
        )
        mappers.append(
            {"filter": _both(_IS_REST, _status_is(status)), "body_format_override": rest_body}
        )
    if not rest_only:
        # Any other refusal of a REST call (a transcoding error, say) is JSON too.
        mappers.append(
            {"filter": _IS_REST, "body_format_override": _rest_body(2, "GATEWAY_ERROR", {})}
        )
    return mappers


# -- the REST origin listener ----------------------------------------------------------------


def rest_origin_listener(config: StackConfig, descriptor: Path | None) -> Data:
    """The REST origin the HTTP cache fills from: the same transcoder, routed to the catalog.
    Loopback only and not meant for clients (it has no JWT filter; it serves public reads)."""
    return _http_connection_manager(
        "rest-origin",
        config.ports.of("envoy-rest-origin"),
        {
            "stat_prefix": "rest_origin",
            "codec_type": "AUTO",
            # Its callers are all REST: refusals (503 while the catalog is down) are JSON.
            "local_reply_config": {"mappers": local_reply_mappers(rest_only=True)},
            "route_config": {
                "name": "rest_origin",
                "virtual_hosts": [
                    {
                        "name": "origin",
                        "domains": ["*"],
                        "routes": [
                            _route(
                                {"prefix": "/ticketing.catalog.v1.CatalogService/GetEvent"},
                                "catalog",
                                "15s",
                            ),
                            {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
                        ],
                    }
                ],
            },
            "http_filters": [NOT_MODIFIED, *_transcoder(descriptor), _ROUTER],
        },
    )


# The event page's revalidation (catalog_svc/servicer.py, NOT_MODIFIED_HEADER): the gateway's
# HTTP cache asks for an expired copy again with If-None-Match, and GetEventPage answers an
# unchanged page with an empty body and this marker, which becomes a 304 here (a gRPC answer
# has no HTTP status of its own). The cache then serves its copy, refreshed, for another
# second. Why: when a copy expires, every connection with a request under way misses at once
# (this cache filter does not coalesce misses); with the whole page each, those misses took
# 60-140 ms at 64 connections and were the p99 (bench/RESULTS.md, 2026-12-04).
NOT_MODIFIED = {
    "name": "envoy.filters.http.lua",
    "typed_config": _typed(
        "envoy.extensions.filters.http.lua.v3.Lua",
        default_source_code={
            "inline_string": (
                "function envoy_on_response(handle)\n"
                "  local headers = handle:headers()\n"
                '  if headers:get("x-ticketing-not-modified") ~= nil then\n'
                '    headers:remove("x-ticketing-not-modified")\n'
                '    headers:replace(":status", "304")\n'
                "  end\n"
                "end\n"
            )
        },
    ),
}


# -- clusters --------------------------------------------------------------------------------


def clusters(
    config: StackConfig, settings: GatewaySettings, tls: TlsFiles | None = None
) -> list[Data]:
    ports = config.ports
    service_ports = {
        name: [ports.of(i) for i in instances(comp, config.replicas)]
        for name, comp in SERVICE_CLUSTERS.items()
    }
    # Reflection, health and preflights: any service of the mesh.
    service_ports["mesh"] = [p for name in SERVICE_CLUSTERS for p in service_ports[name]]
    result = [service_cluster(name, ports_, tls) for name, ports_ in service_ports.items()]
    result += [
        service_cluster(name, service_ports[service], tls, streams=True)
        for name, service in STREAM_CLUSTERS.items()
    ]
    # The REST origin: the gateway's own second listener, which transcodes. The HTTP cache
    # filter fetches misses through its own client, past the filters that follow it, so a
    # cached REST page must come from an upstream that answers REST itself.
    result.append(_plain_cluster("catalog_rest", ports.of("envoy-rest-origin")))
    # The web client's server (deploy/stack/webclient.py): plain HTTP/1.1.
    result.append(_plain_cluster("web", ports.of("web")))
    # The stack's Prometheus server, for the operator routes (a 503 while it is not running).
    result.append(_plain_cluster(PROMETHEUS_CLUSTER, ports.of("prometheus")))
    if settings.jwt.jwks_url:
        result.append(jwks_cluster(settings.jwt.jwks_url))
    return result


def service_cluster(
    name: str, ports: list[int], tls: TlsFiles | None = None, *, streams: bool = False
) -> Data:
    """A service's instances. Unary calls (``streams`` False): a new upstream connection every
    32 concurrent calls and every 200 calls, so the kernel spreads connections over a service's
    worker processes (SO_REUSEPORT) and load over cores. Long-lived streams (a watch cluster):
    1,000 per connection, kept."""
    protocol: Data = {
        "explicit_http_config": {
            "http2_protocol_options": {
                "max_concurrent_streams": WATCH_STREAMS_PER_CONNECTION
                if streams
                else UNARY_STREAMS_PER_CONNECTION
            }
        }
    }
    if not streams:
        protocol["common_http_protocol_options"] = {
            "max_requests_per_connection": UNARY_CALLS_PER_CONNECTION
        }
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions", **protocol
            )
        },
        # Envoy's defaults (1024 requests in flight) would cap the waiting room's watchers.
        "circuit_breakers": {
            "thresholds": [
                {"max_connections": 20000, "max_pending_requests": 20000, "max_requests": 100000}
            ]
        },
        # Fail fast: a service that is down is not tried (503 / UNAVAILABLE at once, "no
        # healthy upstream"), even when it is a cluster's only endpoint; until the health check
        # has seen it go, the refused connection fails just as fast. Checked every second while
        # unhealthy, so a restarted service is back within about a second of answering its
        # health check.
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
        # Several instances (`ticketing up --replicas`): the one that keeps failing (refused or
        # reset connections, 5xx) is ejected at once for a few seconds, before its health check
        # has seen it go; never more than half of them.
        "outlier_detection": {
            "consecutive_5xx": 5,
            "consecutive_gateway_failure": 2,
            "interval": "1s",
            "base_ejection_time": "5s",
            "max_ejection_percent": 50,
        },
        "load_assignment": _load_assignment(name, ports),
        "health_checks": [
            {
                "timeout": "3s",
                "interval": "2s",
                "unhealthy_interval": "1s",
                "no_traffic_interval": "2s",
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "grpc_health_check": {},
            }
        ],
    } | ({} if tls is None else {"transport_socket": upstream_tls(name, tls)})


def upstream_tls(cluster: str, tls: TlsFiles) -> Data:
    """Mutual TLS towards a service's instances (ticketing_common.tls): the gateway presents
    its certificate (the one identity whose caller headers a service believes), offers h2 by
    ALPN, and accepts only a certificate of the mesh's CA naming that service (any service of
    the mesh for the ``mesh`` cluster). Health checks travel the same connections."""
    component = SERVICE_CLUSTERS.get(STREAM_CLUSTERS.get(cluster, cluster))
    matcher = (
        {"exact": identity_of(component)} if component is not None else {"prefix": identity_of("")}
    )
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": _typed(
            "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            common_tls_context={
                "alpn_protocols": ["h2"],
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(tls.cert)},
                        "private_key": {"filename": str(tls.key)},
                    }
                ],
                "validation_context": {
                    "trusted_ca": {"filename": str(tls.ca)},
                    "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": matcher}],
                },
            },
        ),
    }


def _plain_cluster(name: str, port: int) -> Data:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": _load_assignment(name, [port]),
    }


def jwks_cluster(url: str) -> Data:
    """The production issuer's JWKS endpoint, fetched by jwt_authn (and cached) in the
    background."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    cluster: Data = {
        "name": "jwks",
        "type": "LOGICAL_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "load_assignment": _load_assignment("jwks", [parts.port or (443 if tls else 80)], host),
    }
    if tls:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": _typed(
                "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                sni=host,
                common_tls_context={
                    "validation_context": {
                        "trusted_ca": {"filename": _ca_bundle()},
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": host}}
                        ],
                    }
                },
            ),
        }
    return cluster


def _ca_bundle() -> str:
    """The system's CA certificates, for the TLS connection to a production JWKS endpoint."""
    paths = ssl.get_default_verify_paths()
    for candidate in ("/etc/ssl/certs/ca-certificates.crt", paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise GatewayConfigError("no CA certificate bundle found to verify the JWKS endpoint")


# -- tracing ---------------------------------------------------------------------------------

TRACING_CLUSTER = "otel_collector"


def with_tracing(data: Data, endpoint: str) -> Data:
    """``data`` with Envoy starting or continuing a W3C trace (``traceparent``) for every call
    through the gateway listener, its spans exported over OTLP/HTTP to ``endpoint`` (the
    services' ``OTEL_EXPORTER_OTLP_ENDPOINT``, e.g. ``http://127.0.0.1:4318``); the services
    continue the trace from the ``traceparent`` Envoy sends them."""
    url = urlsplit(endpoint)
    if url.scheme != "http" or not url.hostname:
        raise GatewayConfigError(f"the gateway exports traces over plain HTTP only: {endpoint!r}")
    port = url.port or 4318
    tracing = {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": _typed(
                "envoy.config.trace.v3.OpenTelemetryConfig",
                http_service={
                    "http_uri": {
                        "uri": f"http://{url.hostname}:{port}{url.path.rstrip('/')}/v1/traces",
                        "cluster": TRACING_CLUSTER,
                        "timeout": "2s",
                    }
                },
                service_name="gateway",
            ),
        }
    }
    for listener in data["static_resources"]["listeners"]:
        if listener["name"] != "gateway":
            continue
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                network_filter["typed_config"]["tracing"] = tracing
    data["static_resources"]["clusters"].append(
        {
            "name": TRACING_CLUSTER,
            "type": "STRICT_DNS",
            "connect_timeout": "1s",
            "load_assignment": _load_assignment(TRACING_CLUSTER, [port], url.hostname),
        }
    )
    return data
