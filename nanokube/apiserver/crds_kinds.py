"""A CustomResourceDefinition's served versions as `Kind`s: what the CRD declares, per version.

Upstream's apiextensions-apiserver builds one "serving info" per CRD version
(`pkg/apiserver/customresource_handler.go`): the names and scope, the
structural schema that validates, prunes and defaults the objects, the
status/scale subresources and the table convertor of `additionalPrinterColumns`.
Here each of those becomes a field of a `Kind`, so the generic handlers serve
custom resources like any built-in kind:

- `defaults` runs after the unknown-field check (fieldValidation) and does what
  upstream's decoder does to a custom resource: prune the fields the schema
  does not declare, drop nulls of non-nullable fields without a default, and
  fill `default`s of missing properties (structural defaulting).
- `columns`/`row`: NAME, then the printer columns, each a JSONPath evaluated as
  upstream's `tableconvertor` does (first result; strings printed as Go's
  `fmt.Sprint`, other types as JSON values, dates as ages); AGE when the
  version declares none.
- `generation`: custom resources always have one (1 on create, bumped by any
  change outside metadata, and outside status when status is a subresource).

This module is pure (no I/O); `crds` runs the controller that uses it.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from nanokube.api import meta
from nanokube.api import validators as v
from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind, Scale
from nanokube.apiserver.tables import NAME_COLUMN

Obj = dict[str, Any]
Schema = dict[str, Any]

# A version without a schema (only v1beta1 CRDs had those) accepts anything.
OPEN_SCHEMA: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
CREATION_TIMESTAMP_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_DEFAULT_COLUMNS = (
    {
        "name": "Age",
        "type": "date",
        "description": CREATION_TIMESTAMP_DESCRIPTION,
        "jsonPath": ".metadata.creationTimestamp",
    },
)
_OBJECT_KEYS = ("apiVersion", "kind", "metadata")

# --- pruning and defaulting ------------------------------------------------------------


def prune(node: Schema, value: Any, top: bool = False) -> None:
    """Drop, in place, every field the structural schema does not declare (upstream's pruning)."""
    if isinstance(value, list):
        items = node.get("items")
        if isinstance(items, dict):
            for child in value:
                prune(items, child)
        return
    if not isinstance(value, dict):
        return
    props = node.get("properties") or {}
    extra = node.get("additionalProperties")
    preserve = node.get("x-kubernetes-preserve-unknown-fields") or extra is True
    embedded = top or node.get("x-kubernetes-embedded-resource")
    for key in list(value):
        if embedded and key in _OBJECT_KEYS:
            continue
        if key in props:
            prune(props[key], value[key])
        elif isinstance(extra, dict):
            prune(extra, value[key])
        elif not preserve:
            del value[key]


def apply_defaults(node: Schema, value: Any, top: bool = False) -> None:
    """Structural defaulting, in place: a missing property (or a null one that may not be
    null) takes its schema's `default`; other nulls of non-nullable fields are dropped."""
    if isinstance(value, list):
        items = node.get("items")
        if isinstance(items, dict):
            for child in value:
                apply_defaults(items, child)
        return
    if not isinstance(value, dict):
        return
    props = node.get("properties") or {}
    embedded = top or node.get("x-kubernetes-embedded-resource")
    for key, sub in props.items():
        if embedded and key == "metadata":
            continue
        if key not in value or (value[key] is None and not sub.get("nullable")):
            if "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            elif key in value:
                del value[key]
    for key, child in value.items():
        if embedded and key in _OBJECT_KEYS:
            continue
        if key in props:
            apply_defaults(props[key], child)
        elif isinstance(node.get("additionalProperties"), dict):
            apply_defaults(node["additionalProperties"], child)


# --- JSONPath ------------------------------------------------------------------------------

Step = tuple[str, Any]  # ("field", name) | ("index", n) | ("all", None) | ("filter", Filter)
_FILTER = re.compile(
    r"""\?\(\s*@((?:\.[^.\s=!<>()]+)*)\s*(?:(==|!=|<=|>=|<|>)\s*("[^"]*"|'[^']*'|[^\s)]+))?\s*\)"""
)


class JSONPathError(ValueError):
    """A JSONPath this subset of kubectl's JSONPath cannot parse."""


def compile_jsonpath(path: str) -> list[Step]:
    """`.spec.replicas`, `.items[0]`, `['a.b']`, `[*]`, `[?(@.type=="Ready")]`, as kubectl's."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if text.startswith("$"):
        text = text[1:]
    steps: list[Step] = []
    i = 0
    while i < len(text):
        if text[i] == ".":
            j = i + 1
            while j < len(text) and text[j] not in ".[":
                j += 1
            name = text[i + 1 : j]
            if not name:
                raise JSONPathError(f"unsupported JSONPath: {path}")
            steps.append(("all", None) if name == "*" else ("field", name))
            i = j
        elif text[i] == "[":
            j = _closing_bracket(text, i, path)
            steps.append(_bracket(text[i + 1 : j].strip(), path))
            i = j + 1
        else:
            raise JSONPathError(f"unsupported JSONPath: {path}")
    return steps


def _closing_bracket(text: str, start: int, path: str) -> int:
    quote = ""
    for j in range(start + 1, len(text)):
        c = text[j]
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c == "]":
            return j
    raise JSONPathError(f"unclosed bracket in JSONPath: {path}")


def _bracket(inner: str, path: str) -> Step:
    if inner == "*":
        return ("all", None)
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "\"'":
        return ("field", inner[1:-1])
    if re.fullmatch(r"-?\d+", inner):
        return ("index", int(inner))
    m = _FILTER.fullmatch(inner)
    if m is None:
        raise JSONPathError(f"unsupported JSONPath: {path}")
    sub = compile_jsonpath(m.group(1)) if m.group(1) else []
    literal = _literal(m.group(3)) if m.group(2) else None
    return ("filter", (sub, m.group(2), literal))


def _literal(text: str) -> Any:
    if text[0] in "\"'":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        return text


def evaluate(steps: list[Step], value: Any) -> list[Any]:
    """Every value the path reaches, in document order; [] when it reaches nothing."""
    current = [value]
    for kind, arg in steps:
        found: list[Any] = []
        for node in current:
            if kind == "field":
                if isinstance(node, dict) and arg in node:
                    found.append(node[arg])
            elif kind == "index":
                if isinstance(node, list) and -len(node) <= arg < len(node):
                    found.append(node[arg])
            elif kind == "all":
                if isinstance(node, list):
                    found.extend(node)
                elif isinstance(node, dict):
                    found.extend(node[k] for k in sorted(node))
            elif isinstance(node, list):
                found.extend(item for item in node if _matches(arg, item))
        current = found
    return current


def _matches(condition: tuple[list[Step], str | None, Any], item: Any) -> bool:
    sub, op, literal = condition
    values = evaluate(sub, item)
    if op is None:
        return bool(values)
    if not values:
        return False
    left = values[0]
    if op == "==":
        return bool(left == literal)
    if op == "!=":
        return bool(left != literal)
    if isinstance(left, bool) or not isinstance(left, (int, float)):
        return False
    if not isinstance(literal, (int, float)):
        return False
    return {"<": left < literal, ">": left > literal, "<=": left <= literal, ">=": left >= literal}[
        op
    ]


# --- printing ------------------------------------------------------------------------------


def go_sprint(value: Any) -> str:
    """A JSON value as Go's `fmt.Sprint` prints it (what kubectl's JSONPath prints)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + " ".join(go_sprint(x) for x in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_sprint(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _go_float(f: float) -> str:
    """`strconv.FormatFloat(f, 'g', -1, 64)`; integral values are int64 in Go's JSON."""
    if math.isfinite(f) and f.is_integer() and abs(f) < 2**63:
        return str(int(f))
    if not math.isfinite(f):
        return "NaN" if math.isnan(f) else ("+Inf" if f > 0 else "-Inf")
    sign, digits, exponent = Decimal(repr(f)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    dp = len(digits) + exponent  # position of the decimal point in `text`
    x = dp - 1
    minus = "-" if sign else ""
    if x < -4 or x >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mantissa}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if dp <= 0:
        return f"{minus}0.{'0' * -dp}{text}"
    if dp >= len(text):
        return minus + text + "0" * (dp - len(text))
    return f"{minus}{text[:dp]}.{text[dp:]}"


def cell(column_type: str, value: Any) -> Any:
    """One table cell of a printer column, as upstream's `cellForJSONValue`."""
    if value is None:
        return None
    if column_type == "string":
        return go_sprint(value)
    if column_type == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if column_type == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        try:
            return meta.age(value)
        except ValueError:
            return "<invalid>"
    return None


def printer_columns(
    definitions: list[Obj],
) -> tuple[tuple[Column, ...], Callable[[Obj], list[Any]]]:
    """The columns (NAME first) and the row function of `additionalPrinterColumns`."""
    columns = [NAME_COLUMN]
    paths: list[tuple[str, list[Step] | None]] = []
    for d in definitions or _DEFAULT_COLUMNS:
        json_path = d.get("jsonPath") or ""
        columns.append(
            Column(
                d.get("name") or "",
                d.get("type") or "string",
                d.get("format") or "",
                d.get("description")
                or f"Custom resource definition column (in JSONPath format): {json_path}",
                int(d.get("priority") or 0),
            )
        )
        try:
            steps: list[Step] | None = compile_jsonpath(json_path)
        except JSONPathError:
            steps = None  # upstream's CRD validation refuses it; print nothing
        paths.append((d.get("type") or "string", steps))

    def row(obj: Obj) -> list[Any]:
        cells: list[Any] = [meta.name(obj)]
        for column_type, steps in paths:
            found = evaluate(steps, obj) if steps is not None else []
            cells.append(cell(column_type, found[0]) if found else None)
        return cells

    return tuple(columns), row


# --- the Kind ------------------------------------------------------------------------------


def _simple_path(path: str) -> tuple[str, ...]:
    """`.spec.replicas` → ("spec", "replicas"): scale paths are simple field paths."""
    return tuple(p for p in path.split(".") if p)


def scale_of_version(subresources: Obj) -> Scale | None:
    """The scale subresource's paths; the selector path leads to a label selector *string*."""
    scale = subresources.get("scale")
    if not isinstance(scale, dict):
        return None
    return Scale(
        spec_replicas=_simple_path(scale.get("specReplicasPath") or ".spec.replicas"),
        status_replicas=_simple_path(scale.get("statusReplicasPath") or ".status.replicas"),
        selector=_simple_path(scale.get("labelSelectorPath") or ""),
    )


def _content(obj: Obj) -> Obj:
    return {k: val for k, val in obj.items() if k != "metadata"}


def build_kind(
    spec: Obj, names: Obj, version: Obj, prepare_create: Callable[[Obj], None] | None = None
) -> Kind:
    """The `Kind` serving one version of a CRD under its accepted `names`.

    `prepare_create` runs before a create is admitted (the controller refuses
    creates while the CRD terminates).
    """
    schema: Schema = (version.get("schema") or {}).get("openAPIV3Schema") or OPEN_SCHEMA
    subresources = version.get("subresources") or {}
    has_status = subresources.get("status") is not None
    scale = scale_of_version(subresources)
    namespaced = spec.get("scope") == "Namespaced"
    columns, row = printer_columns(version.get("additionalPrinterColumns") or [])

    def defaults(obj: Obj) -> None:
        prune(schema, obj, top=True)
        apply_defaults(schema, obj, top=True)

    def on_create(obj: Obj) -> None:
        if prepare_create is not None:
            prepare_create(obj)
        obj["metadata"]["generation"] = 1

    def on_update(new: Obj, old: Obj) -> None:
        # With a status subresource the registry counts spec changes itself;
        # without one every change outside metadata is a new generation.
        if not has_status:
            generation = old["metadata"].get("generation") or 1
            new["metadata"]["generation"] = generation + (_content(new) != _content(old))

    def validate(obj: Obj) -> list[Cause]:
        return v.validate_object_meta(obj, namespaced)

    fields = {
        f["jsonPath"].lstrip("."): _field_getter(f["jsonPath"])
        for f in version.get("selectableFields") or []
        if f.get("jsonPath")
    }
    return Kind(
        group=spec.get("group") or "",
        version=version.get("name") or "",
        kind=names.get("kind") or "",
        plural=names.get("plural") or "",
        namespaced=namespaced,
        singular=names.get("singular") or "",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        subresources=tuple(s for s in ("status", "scale") if subresources.get(s) is not None),
        has_status=has_status,
        defaults=defaults,
        prepare_create=on_create,
        prepare_update=on_update,
        validate=validate,
        validate_update=v.validate_object_meta_update,
        columns=columns,
        row=row,
        field_selectors=fields,
        scale=scale,
        custom_schema=schema,
    )


def _field_getter(json_path: str) -> Callable[[Obj], str]:
    path = _simple_path(json_path)

    def get(obj: Obj) -> str:
        value = meta.get_path(obj, path)
        return "" if value is None else go_sprint(value)

    return get


def served_kinds(
    crd: Obj, names: Obj, prepare_create: Callable[[Obj], None] | None = None
) -> list[Kind]:
    """A `Kind` for each served version of the CRD."""
    spec = crd.get("spec") or {}
    return [
        build_kind(spec, names, ver, prepare_create)
        for ver in spec.get("versions") or []
        if ver.get("served")
    ]


def storage_kind(crd: Obj) -> Kind:
    """A Kind naming where the CRD's objects are stored (for deleting them, served or not)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = spec.get("versions") or [{}]
    stored = next((ver for ver in versions if ver.get("storage")), versions[0])
    return Kind(
        group=spec.get("group") or "",
        version=stored.get("name") or "",
        kind=names.get("kind") or "",
        plural=names.get("plural") or "",
        namespaced=spec.get("scope") == "Namespaced",
    )
