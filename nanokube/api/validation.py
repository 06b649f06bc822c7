"""JSON-schema validation of objects, with upstream's error wording.

Upstream checks a body in three steps, and so does nanokube:

1. **Decoding** (built-in kinds): the apiserver decodes JSON into Go structs, so a
   wrong type is not a validation cause but a 400 BadRequest, e.g.
   `Deployment in version "v1" cannot be handled as a Deployment: json: cannot
   unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32`.
   `decode_check` raises exactly that; run it before defaulting, because
   defaulting code may trip over wrong types. Null is accepted anywhere, as Go
   accepts it.
2. **Unknown fields**: decoding also reports fields the type does not have
   (`unknown_fields`); `fieldValidation=Strict` turns them into a 400
   (`strict_error`), `Warn` into `Warning` headers (`unknown_field_warning`),
   `Ignore` drops nothing (nanokube keeps unknown fields of built-ins; custom
   resources are pruned by their schema upstream).
3. **Validation**: `schema_causes` returns 422 Invalid causes: missing required
   fields for built-ins (`spec.containers: Required value`), and for custom
   resources every violation of the CRD's OpenAPI schema in the wording of
   upstream's OpenAPI validator (`spec.replicas: Invalid value: "string":
   spec.replicas in body must be of type integer: "string"`). For built-ins it
   first raises the decoding error, so calling it alone is also correct.

The schemas (`nanokube.api.schema`, draft 2020-12 with nullable types) are
reduced to the validating keywords, with int32/int64 ranges and the Quantity
syntax added, and compiled with `fastjsonschema` lazily, once per definition
(or per custom schema), collecting all errors. The generated exceptions are
compact (no embedded definitions), which halves the compile time; the path of
each error is mapped back onto the schema to find the Go type and struct.
"""

from __future__ import annotations

import binascii
import functools
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from fastjsonschema.draft04 import CodeGeneratorDraft04
from fastjsonschema.exceptions import (
    JsonSchemaDefinitionException,
    JsonSchemaValueException,
    JsonSchemaValuesException,
)
from fastjsonschema.ref_resolver import RefResolver

from nanokube.api import schema
from nanokube.api.errors import BadRequest, Cause
from nanokube.api.kinds import Kind

log = logging.getLogger(__name__)

Schema = dict[str, Any]
Validator = Callable[..., Any]

INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
TIME_DEFS = (
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
)
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# The regular expression of upstream's ParseQuantity, and its messages.
QUANTITY_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$"
QUANTITY_FORMAT_MSG = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
QUANTITY_SUFFIX_MSG = "unable to parse quantity's suffix"
_QUANTITY_NUMBER = re.compile(r"^[+-]?[0-9.]+")
_BASE64_CHARS = re.compile(r"[^A-Za-z0-9+/=]")
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", dict: "object"}
_VALIDATING = {"type", "items", "additionalProperties", "required", "format", "$ref"}
_CUSTOM_VALIDATING = _VALIDATING | {
    "enum", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
    "uniqueItems", "multipleOf", "allOf", "anyOf", "oneOf", "not",
}  # fmt: skip


def _valid_base64(value: str) -> bool:
    try:
        binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error:
        return False
    return True


FORMATS: dict[str, Callable[[str], bool]] = {"byte": _valid_base64}


# --- compiling ---------------------------------------------------------------------------


class _CompactErrors(CodeGeneratorDraft04):
    """Draft-04 code (integers exclude floats, as Go's decoder does) for one definition.

    Exceptions carry value, path and rule but not the expanded definition (inlined
    at every raise, it would make Pod's code five times larger). A `$ref` becomes a
    call through `REFS`, which compiles the referenced definition on first use: a
    definition is compiled only when an object has a field of its type, and once
    for all kinds (PodSpec serves Pod, Deployment, Job...). Compiling Pod's 124
    definitions at once takes ~100 ms; a typical Pod touches a sixth of them.
    """

    def exc(
        self, msg: str, *args: Any, append_to_msg: str | None = None, rule: str | None = None
    ) -> None:
        arg = '"' + msg + '"'
        if append_to_msg:
            arg += " + (" + append_to_msg + ")"
        self.l(
            f'errors.append(JsonSchemaValueException({arg}, value={{variable}}, name="{{name}}", '
            "rule={rule}))",
            *args,
            rule=repr(rule),
        )

    def generate_ref(self) -> None:
        target = self._definition["$ref"][len(schema.REF_PREFIX) :]
        name_arg = f'(name_prefix or "data") + "{self._variable_name[4:]}"'
        if "{" in name_arg or "}" in name_arg:
            name_arg += ".format(**locals())"
        with self.l("try:", optimize=False):
            self.l(
                "REFS[{}]({variable}, custom_formats, {name_arg})", repr(target), name_arg=name_arg
            )
        with self.l("except JsonSchemaValuesException as e:"):
            self.l("errors.extend(e.errors)")


def _compile(root: Schema, generator_class: type[CodeGeneratorDraft04]) -> Validator:
    resolver = RefResolver.from_schema(root, handlers={}, store={})
    generator = generator_class(
        root, resolver=resolver, formats=FORMATS, use_default=False, fast_fail=False
    )
    state = generator.global_state
    state["REFS"] = _REFS
    exec(generator.func_code, state)  # noqa: S102 - code generated from our own schemas
    validator: Validator = state[resolver.get_scope_name()]  # called as (data, formats, path)
    return validator


class _Definitions(dict[str, Validator]):
    """Built-in definition name → its validator, compiled on first lookup."""

    def __missing__(self, name: str) -> Validator:
        started = time.perf_counter()
        validator = _compile(_builtin_defs()[name], _CompactErrors)
        self[name] = validator
        log.debug("compiled schema=%s ms=%.1f", name, (time.perf_counter() - started) * 1000)
        return validator


_REFS = _Definitions()


def _reduce_builtin(s: Any) -> Any:
    """Keep what decoding checks: types (null always allowed), ranges, nesting, required."""
    if not isinstance(s, dict):
        return s
    out: Schema = {}
    for key, value in s.items():
        if key == "properties":
            out[key] = {p: _reduce_builtin(v) for p, v in value.items()}
        elif key == "required":
            out[key] = value
        elif key == "type":
            types = value if isinstance(value, list) else [value]
            out[key] = types if "null" in types else [*types, "null"]
        elif key in _VALIDATING:
            out[key] = _reduce_builtin(value)
        elif key == "allOf" and len(value) == 1:  # allOf: [{$ref}] is a $ref with a description
            out.update(_reduce_builtin(value[0]))
    bounds = INT_RANGES.get(s.get("format", ""))
    if bounds is not None:
        out["minimum"], out["maximum"] = bounds
    return out


@functools.cache
def _builtin_defs() -> dict[str, Schema]:
    defs = {name: _reduce_builtin(s) for name, s in schema.definitions().items()}
    # Go's custom decoders: IntOrString takes an int32 or a string, Quantity a number
    # or a string in its syntax (a oneOf would reject null, which both accept).
    defs[INT_OR_STRING] = {
        "type": ["string", "integer", "null"],
        "minimum": -(2**31),
        "maximum": 2**31 - 1,
    }
    defs[QUANTITY] = {"type": ["string", "number", "null"], "pattern": QUANTITY_RE}
    return defs


def _reduce_custom(s: Any) -> Any:
    """An OpenAPI v3.0 schema as draft 04: `nullable` and int-or-string become types."""
    if not isinstance(s, dict):
        return s
    out: Schema = {}
    for key, value in s.items():
        if key == "properties":
            out[key] = {p: _reduce_custom(v) for p, v in value.items()}
        elif key in ("required", "enum", "type", "pattern"):
            out[key] = value
        elif key in _CUSTOM_VALIDATING:
            out[key] = (
                [_reduce_custom(v) for v in value]
                if isinstance(value, list)
                else _reduce_custom(value)
            )
    if s.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
        out.pop("anyOf", None)
    if s.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif "type" in out:
            out["type"] = [*out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


_CUSTOM: dict[int, tuple[Schema, Validator]] = {}


def _custom_validator(custom: Schema) -> Validator:
    """The compiled validator of a CRD schema, cached by the identity of the schema dict
    (a Kind keeps its schema for its lifetime; a changed CRD makes a new Kind)."""
    entry = _CUSTOM.get(id(custom))
    if entry is not None and entry[0] is custom:
        return entry[1]
    root = _reduce_custom(custom)
    root["$schema"] = "http://json-schema.org/draft-04/schema#"
    try:
        validator = _compile(root, CodeGeneratorDraft04)  # small: keep the detailed exceptions
    except (JsonSchemaDefinitionException, re.error) as e:
        # A schema the API accepted but Python cannot compile (a Go-only regex
        # construct, say) must not turn every write of the resource into a 500.
        log.warning("custom schema not enforced: %s", e)
        validator = _accept_all
    if len(_CUSTOM) >= 256:
        _CUSTOM.clear()
    _CUSTOM[id(custom)] = (custom, validator)
    return validator


def _accept_all(data: Any, formats: Any = None, name_prefix: str | None = None) -> Any:
    return data


def _errors(validator: Validator, obj: Any) -> list[JsonSchemaValueException]:
    try:
        validator(obj, FORMATS)
    except JsonSchemaValuesException as e:
        return e.errors
    except JsonSchemaValueException as e:  # raised from inside anyOf/oneOf trials
        return [e]
    return []


def builtin_schema_name(kind: Kind) -> str:
    """The definition name of a built-in kind (from the Kind, else by its GVK)."""
    return kind.schema_name or schema.definition_for(kind.group, kind.version, kind.kind)


# --- paths ------------------------------------------------------------------------------


def _split_path(name: str) -> list[str | int]:
    """`data.spec.containers[0].name` → ["spec", "containers", 0, "name"]."""
    parts: list[str | int] = []
    for token in re.findall(r"\[(\d+)\]|\.([^.\[]+)", name[4:]):
        parts.append(int(token[0]) if token[0] else token[1])
    return parts


def _field(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


# --- built-in kinds: decoding errors ----------------------------------------------------


def _go_type(defs: dict[str, Schema], s: Schema) -> str:
    ref = s.get("$ref")
    if ref is not None:
        name = ref[len(schema.REF_PREFIX) :]
        if name in TIME_DEFS or name in (QUANTITY, INT_OR_STRING):
            return _go_type(defs, defs[name])
        package, _, short = name.rpartition(".")
        return f"{package.rpartition('.')[2]}.{short}"
    types = [t for t in (s.get("type") or []) if t != "null"]
    if "array" in types:
        return "[]" + _go_type(defs, s.get("items") or {})
    if "object" in types and "properties" not in s:
        extra = s.get("additionalProperties")
        return "map[string]" + (
            _go_type(defs, extra) if isinstance(extra, dict) else "interface {}"
        )
    fmt = s.get("format", "")
    if "integer" in types:
        return fmt if fmt in INT_RANGES else "int"
    return {"number": "float64", "boolean": "bool"}.get(
        types[0] if types else "", "[]uint8" if fmt == "byte" else "string"
    )


def _value_word(value: Any) -> str:
    """How Go's decoder names a JSON value in `cannot unmarshal X`."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, dict):
        return "object"
    return "array" if isinstance(value, list) else "string"


def _decode_message(defs: dict[str, Schema], root: str, error: JsonSchemaValueException) -> str:
    """Upstream's message for the first decoding error at `error`'s path."""
    parts = _split_path(error.name or "data")
    struct, node, fields, ref = root.rpartition(".")[2], defs[root], [], root
    for part in parts:
        node, ref = _follow(defs, node, ref)
        if isinstance(part, int):
            node = node.get("items") or {}
        elif "properties" in node:
            struct = ref.rpartition(".")[2]
            fields.append(part)
            node = node["properties"].get(part) or {}
        else:  # a map key: Go's field stack names the map, not the key
            extra = node.get("additionalProperties")
            node = extra if isinstance(extra, dict) else {}
    target = node.get("$ref", "")[len(schema.REF_PREFIX) :]
    value = error.value
    if target == QUANTITY:
        match = _QUANTITY_NUMBER.match(value) if isinstance(value, str) else None
        return QUANTITY_SUFFIX_MSG if match else QUANTITY_FORMAT_MSG
    if target in TIME_DEFS and isinstance(value, str):
        layout = "2006-01-02T15:04:05Z07:00"
        return f'parsing time "{value}" as "{layout}": cannot parse "{value}" as "2006"'
    if target in TIME_DEFS or target == INT_OR_STRING:
        go = "string" if target in TIME_DEFS else "int32"
        return f"json: cannot unmarshal {_value_word(value)} into Go value of type {go}"
    if error.rule == "format":  # byte: base64
        bad = _BASE64_CHARS.search(value)
        at = bad.start() if bad else len(value) - len(value) % 4
        return f"illegal base64 data at input byte {at}"
    word = _value_word(value)
    if word == "number" and "integer" in node.get("type", ()):  # a fraction or an overflow
        word = f"number {orjson.dumps(value).decode()}"
    field = f"{struct}.{'.'.join(fields)}"
    return (
        f"json: cannot unmarshal {word} into Go struct field {field} of type {_go_type(defs, node)}"
    )


def _follow(defs: dict[str, Schema], node: Schema, ref: str) -> tuple[Schema, str]:
    while "$ref" in node:
        ref = node["$ref"][len(schema.REF_PREFIX) :]
        node = defs[ref]
    return node, ref


def _builtin_split(kind: Kind, obj: Any) -> tuple[str, list[JsonSchemaValueException]]:
    name = builtin_schema_name(kind)
    if not name:
        return name, []
    return name, _errors(_REFS[name], obj)


def _raise_decode(kind: Kind, name: str, obj: Any, errors: list[JsonSchemaValueException]) -> None:
    """Raise the decoding error Go would hit first: the first wrong value in the document."""
    wrong = [e for e in errors if e.rule != "required"]
    if wrong:
        first = min(wrong, key=lambda e: _document_position(obj, _split_path(e.name or "data")))
        raise BadRequest(_decode_prefix(kind) + _decode_message(_builtin_defs(), name, first))


def _document_position(obj: Any, parts: list[str | int]) -> list[int]:
    """Where `parts` is in the document, as indexes of keys and items along the way."""
    position = []
    for part in parts:
        if isinstance(obj, dict) and part in obj:
            position.append(list(obj).index(part))
            obj = obj[part]
        elif isinstance(obj, list) and isinstance(part, int) and part < len(obj):
            position.append(part)
            obj = obj[part]
        else:  # a map key with dots split apart: rare, and only for the order
            break
    return position


def decode_check(kind: Kind, obj: Any) -> bool:
    """Raise the 400 BadRequest upstream's decoder gives a built-in kind for wrong types.

    Custom resources decode into plain maps upstream, so they never fail here.
    Returns whether `schema_causes` still has anything to find after defaulting:
    only missing required fields (which defaulting may fill) or a custom schema,
    so a clean object is checked against its schema once, not twice.
    """
    if kind.custom_schema is not None:
        return True
    name, errors = _builtin_split(kind, obj)
    _raise_decode(kind, name, obj, errors)
    return bool(errors)


# --- unknown fields --------------------------------------------------------------------

MAX_UNKNOWN_FIELDS = 100  # upstream's decoder stops collecting there


def unknown_fields(kind: Kind, obj: Any) -> list[str]:
    """The paths of fields the kind's schema does not declare, in document order.

    `spec.containers[0].foo`, as upstream's strict decoder and pruning name them.
    Maps (`additionalProperties`), schemaless objects (RawExtension) and
    `x-kubernetes-preserve-unknown-fields` accept anything; `metadata` is ObjectMeta.
    """
    out: list[str] = []
    if not isinstance(obj, dict):
        return out
    if kind.custom_schema is not None:
        _unknown_custom(kind.custom_schema, obj, "", out, top=True)
    elif name := builtin_schema_name(kind):
        _unknown_builtin(_builtin_defs(), _builtin_defs()[name], obj, "", out)
    return out[:MAX_UNKNOWN_FIELDS]


def _unknown_builtin(
    defs: dict[str, Schema], node: Schema, value: Any, path: str, out: list[str]
) -> None:
    while "$ref" in node:
        node = defs[node["$ref"][len(schema.REF_PREFIX) :]]
    if isinstance(value, dict):
        props = node.get("properties")
        if props is not None:
            for key, child in value.items():
                sub = props.get(key)
                if sub is None:
                    out.append(f"{path}.{key}" if path else key)
                elif isinstance(child, (dict, list)):
                    _unknown_builtin(defs, sub, child, f"{path}.{key}" if path else key, out)
            return
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key, child in value.items():
                if isinstance(child, (dict, list)):
                    _unknown_builtin(defs, extra, child, f"{path}.{key}" if path else key, out)
    elif isinstance(value, list):
        items = node.get("items")
        if items:
            for i, child in enumerate(value):
                if isinstance(child, (dict, list)):
                    _unknown_builtin(defs, items, child, f"{path}[{i}]", out)


def _unknown_custom(node: Schema, value: Any, path: str, out: list[str], top: bool = False) -> None:
    """Upstream's pruning walk over a structural schema, reporting what it would drop."""
    if isinstance(value, list):
        items = node.get("items")
        if isinstance(items, dict):
            for i, child in enumerate(value):
                _unknown_custom(items, child, f"{path}[{i}]", out)
        return
    if not isinstance(value, dict):
        return
    props = node.get("properties") or {}
    extra = node.get("additionalProperties")
    preserve = node.get("x-kubernetes-preserve-unknown-fields") or extra is True
    embedded = top or node.get("x-kubernetes-embedded-resource")
    for key, child in value.items():
        at = f"{path}.{key}" if path else key
        if embedded and key in ("apiVersion", "kind"):
            continue
        if embedded and key == "metadata":
            defs = _builtin_defs()
            _unknown_builtin(defs, defs[OBJECT_META], child, at, out)
        elif key in props:
            _unknown_custom(props[key], child, at, out)
        elif isinstance(extra, dict):
            _unknown_custom(extra, child, at, out)
        elif not preserve:
            out.append(at)


def unknown_field_warning(path: str) -> str:
    """The `Warning` header text upstream sends for `fieldValidation=Warn`."""
    return f'unknown field "{path}"'


def strict_error(kind: Kind, paths: list[str]) -> BadRequest:
    """The 400 upstream returns for `fieldValidation=Strict` (the default of kubectl)."""
    detail = ", ".join(unknown_field_warning(p) for p in paths)
    return BadRequest(_decode_prefix(kind) + f"strict decoding error: {detail}")


def _decode_prefix(kind: Kind) -> str:
    return f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '


# --- causes -----------------------------------------------------------------------------


def schema_causes(kind: Kind, obj: Any) -> list[Cause]:
    """The 422 Invalid causes from the schema (see the module docstring).

    Raises BadRequest first if a built-in kind's object would not even decode.
    """
    if kind.custom_schema is not None:
        errors = _errors(_custom_validator(kind.custom_schema), obj)
        return [c for e in errors for c in _custom_causes(e)]
    name, errors = _builtin_split(kind, obj)
    _raise_decode(kind, name, obj, errors)
    return [c for e in errors for c in _required_causes(e, _builtin_defs(), name)]


def _node_at(defs: dict[str, Schema], root: Schema, parts: list[str | int]) -> Schema:
    node, ref = _follow(defs, root, "")
    for part in parts:
        if isinstance(part, int):
            node = node.get("items") or {}
        elif "properties" in node:
            node = node["properties"].get(part) or {}
        else:
            extra = node.get("additionalProperties")
            node = extra if isinstance(extra, dict) else {}
        node, ref = _follow(defs, node, ref)
    return node


def _required_causes(
    error: JsonSchemaValueException, defs: dict[str, Schema], root: str
) -> Iterator[Cause]:
    parts = _split_path(error.name or "data")
    node = _node_at(defs, defs[root], parts)
    value = error.value if isinstance(error.value, dict) else {}
    for field in node.get("required", ()):
        if field not in value:
            yield Cause(_field([*parts, field]), "Required value", "FieldValueRequired")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "array"
    return _JSON_TYPES.get(type(value), "string")


def _quote(value: Any) -> str:
    """A value as upstream's field errors print it: strings quoted, numbers bare."""
    return orjson.dumps(value).decode()


def _custom_causes(error: JsonSchemaValueException) -> Iterator[Cause]:
    """kube-openapi's wording for one schema violation of a custom resource."""
    parts = _split_path(error.name or "data")
    field, rule, value, operand = _field(parts), error.rule, error.value, error.rule_definition
    at = f"{field} in body" if field else "body"
    if rule == "required":
        for name in operand or ():
            if isinstance(value, dict) and name not in value:
                yield Cause(_field([*parts, name]), "Required value", "FieldValueRequired")
        return
    if rule == "type":
        given = _json_type(value)
        expected = ",".join(
            t for t in (operand if isinstance(operand, list) else [operand]) if t != "null"
        )
        message = f'Invalid value: "{given}": {at} must be of type {expected}: "{given}"'
        yield Cause(field, message, "FieldValueTypeInvalid")
        return
    if rule == "maxLength":
        yield Cause(field, f"Too long: may not be more than {operand} bytes", "FieldValueTooLong")
        return
    if rule == "maxItems" and isinstance(value, list):
        message = f"Too many: {len(value)}: must have at most {operand} items"
        yield Cause(field, message, "FieldValueTooMany")
        return
    if rule == "enum":
        supported = ", ".join(_quote(v) for v in operand or () if v is not None)
        message = f"Unsupported value: {_quote(value)}: supported values: {supported}"
        yield Cause(field, message, "FieldValueNotSupported")
        return
    text = {
        "minimum": f"should be greater than or equal to {operand}",
        "maximum": f"should be less than or equal to {operand}",
        "exclusiveMinimum": f"should be greater than {operand}",
        "exclusiveMaximum": f"should be less than {operand}",
        "pattern": f"should match '{operand}'",
        "minLength": f"should be at least {operand} chars long",
        "minItems": f"should have at least {operand} items",
        "minProperties": f"should have at least {operand} properties",
        "maxProperties": f"should have at most {operand} properties",
        "uniqueItems": "shouldn't contain duplicates",
        "multipleOf": f"should be a multiple of {operand}",
        "format": f"must be of type {operand}",
    }.get(rule or "", error.message.removeprefix(error.name or "").strip())
    yield Cause(field, f"Invalid value: {_quote(value)}: {at} {text}", "FieldValueInvalid")
