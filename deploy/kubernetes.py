"""What the Helm chart (deploy/helm/ticketing) takes from the project's own sources.

The gateway's Envoy config is rendered from the one template the local stack uses
(envoy/envoy.yaml.tmpl, through deploy/stack/gateway.py), for Kubernetes addresses and a
production token issuer, and handed to the chart as a file:

    python -m deploy.kubernetes envoy-config \\
        --jwks-url https://auth.example.com/.well-known/jwks.json \\
        --jwt-issuer https://auth.example.com/ --jwt-audience ticketing \\
        --cors-origin https://tickets.example.com -o envoy.yaml
    helm install ticketing deploy/helm/ticketing --set-file gateway.envoyConfig=envoy.yaml

Routes, limits, JWT rules and transcoding are therefore never written twice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy.stack import gateway


def envoy_config(
    jwks_url: str,
    issuer: str,
    audiences: list[str],
    origins: list[str],
    descriptor: str = gateway.KUBERNETES_DESCRIPTOR,
) -> str:
    settings = gateway.GatewaySettings().with_jwt(
        jwks_url=jwks_url, issuer=issuer, audiences=tuple(audiences)
    )
    return gateway.render_kubernetes(settings, origins, descriptor=descriptor)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.kubernetes", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    envoy = commands.add_parser("envoy-config", help="the gateway's Envoy config for the chart")
    envoy.add_argument("--jwks-url", required=True, help="the token issuer's JWKS endpoint")
    envoy.add_argument("--jwt-issuer", required=True, help="the tokens' iss claim")
    envoy.add_argument("--jwt-audience", action="append", required=True, help="an aud claim")
    envoy.add_argument("--cors-origin", action="append", required=True, help="a browser origin")
    envoy.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    ns = parser.parse_args(argv)
    try:
        text = envoy_config(ns.jwks_url, ns.jwt_issuer, ns.jwt_audience, ns.cors_origin)
    except (ValueError, gateway.GatewayConfigError) as exc:
        print(f"envoy-config: {exc}", file=sys.stderr)
        return 2
    if ns.output:
        ns.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
