"""A CRD version turned into a Kind: pruning, defaulting, JSONPath columns, cells, scale paths.

Aspects: pruning keeps apiVersion/kind/metadata, preserved and map fields;
structural defaulting fills missing and null non-nullable properties (nested
defaults included); kubectl's JSONPath subset (fields, indexes, wildcards,
quoted keys, filters); cells as upstream's table convertor makes them (Go's
`fmt.Sprint` for strings); the Kind's names, scope, subresources, scale paths
and generation rules.
"""

from __future__ import annotations

from typing import Any

import pytest

from nanokube.apiserver import crds_kinds as ck

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "size": {"type": "integer", "default": 1},
                "note": {"type": "string", "nullable": True},
                "mode": {"type": "string"},
                "nested": {
                    "type": "object",
                    "default": {},
                    "properties": {"deep": {"type": "string", "default": "d"}},
                },
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"port": {"type": "integer", "default": 80}},
                    },
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        }
    },
}


def test_prune_drops_undeclared_fields_only() -> None:
    obj = {
        "apiVersion": "x/v1",
        "kind": "X",
        "metadata": {"name": "a"},
        "top": 1,
        "spec": {
            "size": 2,
            "bogus": True,
            "items": [{"port": 1, "extra": 2}],
            "labels": {"a": "b"},
            "free": {"any": {"thing": 1}},
        },
    }
    ck.prune(SCHEMA, obj, top=True)
    assert obj == {
        "apiVersion": "x/v1",
        "kind": "X",
        "metadata": {"name": "a"},
        "spec": {
            "size": 2,
            "items": [{"port": 1}],
            "labels": {"a": "b"},
            "free": {"any": {"thing": 1}},
        },
    }


def test_defaults_fill_missing_and_non_nullable_nulls() -> None:
    obj: dict[str, Any] = {
        "metadata": {"name": "a"},
        "spec": {"note": None, "mode": None, "items": [{}, {"port": 8}], "size": None},
    }
    ck.apply_defaults(SCHEMA, obj, top=True)
    assert obj["spec"] == {
        "note": None,  # nullable: kept
        "items": [{"port": 80}, {"port": 8}],
        "size": 1,  # null, not nullable, has a default
        "nested": {"deep": "d"},  # a defaulted object is defaulted inside too
    }
    assert obj["metadata"] == {"name": "a"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".spec.replicas", [3]),
        ("{.spec.replicas}", [3]),
        (".spec.missing", []),
        (".status.conditions[0].type", ["Ready"]),
        (".status.conditions[-1].type", ["Synced"]),
        (".status.conditions[*].type", ["Ready", "Synced"]),
        ('.status.conditions[?(@.type=="Synced")].status', ["False"]),
        (".status.conditions[?(@.type!='Synced')].status", ["True"]),
        (".status.conditions[?(@.reason)].type", ["Synced"]),
        (".status.conditions[?(@.weight>2)].type", ["Synced"]),
        (".metadata.labels['app.kubernetes.io/name']", ["web"]),
        (".metadata.labels.*", ["web", "x"]),
    ],
)
def test_jsonpath(path: str, expected: list[Any]) -> None:
    obj = {
        "metadata": {"labels": {"app.kubernetes.io/name": "web", "tier": "x"}},
        "spec": {"replicas": 3},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "weight": 1},
                {"type": "Synced", "status": "False", "reason": "Late", "weight": 5},
            ]
        },
    }
    assert ck.evaluate(ck.compile_jsonpath(path), obj) == expected


@pytest.mark.parametrize("path", ["spec", ".spec[", ".a[?(@.x ~ 1)]", ".."])
def test_jsonpath_errors(path: str) -> None:
    with pytest.raises(ck.JSONPathError):
        ck.compile_jsonpath(path)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("s", "s"),
        (3, "3"),
        (3.0, "3"),
        (1.5, "1.5"),
        (0.00001, "1e-05"),
        (1234567.5, "1.2345675e+06"),
        (True, "true"),
        ([1, "a"], "[1 a]"),
        ({"b": 1, "a": [2]}, "map[a:[2] b:1]"),
    ],
)
def test_go_sprint(value: Any, text: str) -> None:
    assert ck.go_sprint(value) == text


def test_cells_by_column_type() -> None:
    assert ck.cell("integer", 2.0) == 2
    assert ck.cell("integer", "2") is None
    assert ck.cell("number", 2) == 2.0
    assert ck.cell("boolean", True) is True
    assert ck.cell("boolean", "true") is None
    assert ck.cell("string", {"a": 1}) == "map[a:1]"
    assert ck.cell("date", "not a date") == "<invalid>"
    assert "y" in ck.cell("date", "2020-01-01T00:00:00Z")  # years: 6y330d
    assert ck.cell("string", None) is None


def test_printer_columns_default_to_age() -> None:
    columns, row = ck.printer_columns([])
    assert [(c.name, c.type, c.format) for c in columns] == [
        ("Name", "string", "name"),
        ("Age", "date", ""),
    ]
    assert row({"metadata": {"name": "a"}}) == ["a", None]


def crd(**version: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "things.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "things", "kind": "Thing"},
            "versions": [
                {"name": "v1beta1", "served": False, "storage": False},
                {"name": "v1", "served": True, "storage": True, **version},
            ],
        },
    }


def test_served_kind_and_storage_kind() -> None:
    names = {"plural": "things", "singular": "thing", "kind": "Thing", "shortNames": ["th"]}
    scale = {"specReplicasPath": ".spec.count", "statusReplicasPath": ".status.count"}
    (kind,) = ck.served_kinds(crd(subresources={"status": {}, "scale": scale}), names)
    assert (kind.group, kind.version, kind.kind, kind.plural) == (
        "example.com",
        "v1",
        "Thing",
        "things",
    )
    assert kind.namespaced is False and kind.short_names == ("th",)
    assert kind.subresources == ("status", "scale") and kind.has_status
    assert kind.scale is not None
    assert kind.scale.spec_replicas == ("spec", "count")
    assert kind.scale.selector == ()  # no labelSelectorPath: no selector
    assert kind.custom_schema == ck.OPEN_SCHEMA
    storage = ck.storage_kind(crd())
    assert storage.version == "v1" and storage.storage_prefix == "/registry/example.com/things/"


def test_generation_without_status_subresource_counts_every_change() -> None:
    (kind,) = ck.served_kinds(crd(), {"plural": "things", "kind": "Thing"})
    obj: dict[str, Any] = {"metadata": {"name": "a"}, "status": {"x": 1}}
    kind.prepare_create(obj)
    assert obj["metadata"]["generation"] == 1
    new = {"metadata": {"name": "a", "generation": 1}, "status": {"x": 2}}
    kind.prepare_update(new, obj)
    assert new["metadata"]["generation"] == 2
    same = {"metadata": {"name": "a", "labels": {"a": "b"}}, "status": {"x": 2}}
    kind.prepare_update(same, new)
    assert same["metadata"]["generation"] == 2
