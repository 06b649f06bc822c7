"""The Kubernetes 1.33 JSON schemas, as shipped by the `kubernetes-validate` package.

One source serves validation, strategic-merge-patch keys and the served OpenAPI:
the `_definitions.json` of the 1.33 schemas, whose entries carry the upstream
descriptions, `x-kubernetes-group-version-kind`, `x-kubernetes-patch-merge-key`,
`x-kubernetes-patch-strategy` and list-map keys. Loaded lazily, once.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import orjson

SCHEMA_VERSION = "v1.33.0-local"
REF_PREFIX = "#/$defs/"


@functools.cache
def definitions() -> dict[str, dict[str, Any]]:
    """Definition name (`io.k8s.api.core.v1.Pod`) → JSON schema (refs as `#/$defs/NAME`)."""
    # find_spec locates the package's data without importing it (and jsonschema with it).
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the kubernetes-validate package (the Kubernetes schemas) is missing")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "kubernetes-json-schema" / SCHEMA_VERSION / "_definitions.json"
    return orjson.loads(path.read_bytes())["$defs"]


def resolve(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """Follow a `$ref` (also through `allOf: [{$ref}]`) to its definition."""
    while schema is not None:
        ref = schema.get("$ref")
        if ref is None and len(schema.get("allOf", ())) == 1:
            ref = schema["allOf"][0].get("$ref")
        if ref is None:
            return schema
        schema = definitions().get(ref[len(REF_PREFIX) :])
    return None


@functools.cache
def definition_for(group: str, version: str, kind: str) -> str:
    """The definition name of a built-in kind, or "" if the schemas have none."""
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            if gvk.get("group", "") == group and gvk["version"] == version and gvk["kind"] == kind:
                return name
    return ""
