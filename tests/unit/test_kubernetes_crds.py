"""`python -m deploy.kubernetes check-crds`: the operators' custom resources the chart renders,
checked against CRD schemas as strictly as the API server would prune them. The operators' own
CRDs are not in the repository (nor fetched by the tests); a small CRD written here stands in,
with the structural-schema features theirs use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import kubernetes

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.dev"},
    "spec": {
        "group": "example.dev",
        "names": {"kind": "Widget", "plural": "widgets"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "disk": {"x-kubernetes-int-or-string": True},
                                    "config": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                },
                            },
                        },
                    }
                },
            },
            {"name": "v0", "served": False, "storage": False, "schema": {"openAPIV3Schema": {}}},
        ],
    },
}


def widget(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": spec,
    }


@pytest.fixture
def schemas(tmp_path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    path = tmp_path / "crd.yaml"
    path.write_text(yaml.safe_dump_all([{"kind": "Namespace"}, CRD]))
    return kubernetes.crd_schemas([path])


def test_only_served_versions_are_read(schemas: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert set(schemas) == {("example.dev/v1", "Widget")}


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (widget(size=3, disk="10Gi", config={"anything": {"goes": 1}}), None),
        (widget(size=3, disk=10), None),
        # A typo the API server would drop without a word.
        (widget(size=3, sise=4), "Widget/w: spec: Additional properties are not allowed ('sise'"),
        (widget(disk="1Gi"), "Widget/w: spec: 'size' is a required property"),
        (widget(size=0), "Widget/w: spec.size: 0 is less than the minimum of 1"),
        (widget(size=1, disk=[1]), "Widget/w: spec.disk: [1] is not valid under any of"),
    ],
)
def test_a_custom_resource_is_held_to_its_crd(
    schemas: dict[tuple[str, str], dict[str, Any]], doc: dict[str, Any], problem: str | None
) -> None:
    problems, unchecked = kubernetes.check_custom_resources([doc], schemas)
    assert unchecked == []
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_built_in_kinds_are_left_to_kubernetes_validate_and_unknown_crds_are_named(
    schemas: dict[tuple[str, str], dict[str, Any]],
) -> None:
    docs = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "n"}},
        {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "c"}},
    ]
    problems, unchecked = kubernetes.check_custom_resources(docs, schemas)
    assert problems == []
    assert unchecked == ["Certificate/c (cert-manager.io/v1)"]
