"""The local stack's Prometheus server: Debian's ``prometheus`` package, scraping every process's
``/metrics`` and Envoy's ``/stats/prometheus``, with the sale's alert rules.

The configuration is rendered into the state directory at every start (JSON, which is YAML);
the rules come from ``deploy/prometheus/alerts.yml``, tested by ``promtool test rules`` in the
suite (``tests/integration/test_metrics.py``). Without the package (``make run`` installs it when
it runs as root) the stack starts without Prometheus and ``ticketing status`` says so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .ports import HOST, instances
from .state import StackConfig, StateDir

RULES = Path(__file__).resolve().parents[1] / "prometheus" / "alerts.yml"
# Scraped this often: a reserve shows in a query within seconds.
SCRAPE_SECONDS = 2
# component -> its metrics port name in deploy/stack/ports.py
TARGETS = {
    "catalog": "catalog-metrics",
    "search": "search-metrics",
    "booking": "booking-metrics",
    "queue": "queue-metrics",
    "cdc-worker": "cdc-worker-metrics",
}


def binary() -> Path | None:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    return Path(found) if found else None


def promtool() -> Path | None:
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
    )
    return Path(found) if found else None


def config(stack: StackConfig) -> dict[str, Any]:
    ports = stack.ports
    services = [
        {
            "targets": [f"{HOST}:{ports.of(instance + '-metrics')}"],
            "labels": {"component": component, "instance_name": instance},
        }
        for component in TARGETS
        for instance in instances(component, stack.replicas)
    ]
    return {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": "5s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "ticketing", "static_configs": services},
            {
                "job_name": "envoy",
                "metrics_path": "/stats/prometheus",
                "static_configs": [
                    {
                        "targets": [f"{HOST}:{ports.of('envoy-admin')}"],
                        "labels": {"component": "envoy"},
                    }
                ],
            },
        ],
    }


def prepare(state: StateDir, stack: StackConfig) -> Path:
    """Write the configuration; returns its path."""
    root = state.root / "prometheus"
    (root / "data").mkdir(parents=True, exist_ok=True)
    path = root / "prometheus.yml"
    path.write_text(json.dumps(config(stack), indent=2) + "\n")
    return path


def argv(state: StateDir, stack: StackConfig, program: Path) -> list[str]:
    root = state.root / "prometheus"
    return [
        str(program),
        f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={root / 'data'}",
        "--storage.tsdb.retention.time=2d",
        f"--web.listen-address={HOST}:{stack.ports.of('prometheus')}",
        "--web.enable-lifecycle",
    ]
