"""Validation primitives with upstream Kubernetes' exact wording.

Two layers, as in apimachinery:

- value checks (`dns1123_label`, `qualified_name`, `port_num`, ...) return a list
  of messages, empty when the value is valid (`k8s.io/apimachinery/pkg/util/validation`);
- cause builders (`invalid`, `required`, `not_supported`, ...) turn a field path,
  a bad value and a message into a `Cause` whose message reads as upstream's
  `field.Error` does: `Invalid value: "Bad_Name": a lowercase RFC 1123 ...`.

`validate_object_meta` and `label_selector_causes` compose them the way
`ValidateObjectMeta` and `ValidateLabelSelector` do, so every kind reports a bad
name or label identically. Quantities (`500m`, `1Gi`) are parsed to exact
fractions so that comparisons (requests ≤ limits) never suffer from rounding.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from fractions import Fraction
from typing import Any

from nanokube.api.errors import Cause

Obj = dict[str, Any]
NameValidator = Callable[[str, bool], list[str]]

# --- cause builders (k8s.io/apimachinery/pkg/util/validation/field) ------------------


def format_value(value: Any) -> str:
    """A bad value as Go's field.Error prints it: strings quoted, scalars bare."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _with_detail(head: str, detail: str) -> str:
    return f"{head}: {detail}" if detail else head


def invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause(path, _with_detail(f"Invalid value: {format_value(value)}", detail))


def required(path: str, detail: str = "") -> Cause:
    return Cause(path, _with_detail("Required value", detail), "FieldValueRequired")


def forbidden(path: str, detail: str) -> Cause:
    return Cause(path, _with_detail("Forbidden", detail), "FieldValueForbidden")


def duplicate(path: str, value: Any) -> Cause:
    return Cause(path, f"Duplicate value: {format_value(value)}", "FieldValueDuplicate")


def not_found(path: str, value: Any) -> Cause:
    return Cause(path, f"Not found: {format_value(value)}", "FieldValueNotFound")


def not_supported(path: str, value: Any, valid: Iterable[str]) -> Cause:
    quoted = ", ".join(json.dumps(v) for v in valid)
    detail = f"supported values: {quoted}" if quoted else ""
    return Cause(
        path,
        _with_detail(f"Unsupported value: {format_value(value)}", detail),
        "FieldValueNotSupported",
    )


def too_long(path: str, max_length: int) -> Cause:
    unit = "byte" if max_length == 1 else "bytes"
    return Cause(path, f"Too long: may not be more than {max_length} {unit}", "FieldValueTooLong")


def too_many(path: str, actual: int, max_items: int) -> Cause:
    return Cause(
        path, f"Too many: {actual}: must have at most {max_items} items", "FieldValueTooMany"
    )


def immutable(path: str, value: Any) -> Cause:
    """`ValidateImmutableField`: `Invalid value: ...: field is immutable`."""
    return invalid(path, value, "field is immutable")


# --- value checks (k8s.io/apimachinery/pkg/util/validation) -------------------------


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """Upstream's RegexError, double space after the first example included."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    out = msg + " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            out += " or "
        out += f"'{example}', "
    return out + f"regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


EMPTY_ERROR = "must be non-empty"

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
    "start with an alphabetic character, and end with an alphanumeric character"
)
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character"
)
_DNS1123_LABEL = re.compile(f"^{DNS1123_LABEL_FMT}$")
_DNS1123_SUBDOMAIN = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}$")
_DNS1035_LABEL = re.compile(f"^{DNS1035_LABEL_FMT}$")
_QUALIFIED_NAME = re.compile(f"^{QUALIFIED_NAME_FMT}$")
_LABEL_VALUE = re.compile(f"^{LABEL_VALUE_FMT}$")


def dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1123_LABEL.match(value):
        errs.append(regex_error(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _DNS1123_SUBDOMAIN.match(value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1035_LABEL.match(value):
        errs.append(regex_error(DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def qualified_name(value: str) -> list[str]:
    """A label or annotation key: `[DNS-subdomain prefix/]name`."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + EMPTY_ERROR)
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part " + EMPTY_ERROR)
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _QUALIFIED_NAME.match(name):
        errs.append(
            "name part "
            + regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _LABEL_VALUE.match(value):
        errs.append(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def port_num(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [inclusive_range_error(1, 65535)]


_PORT_NAME_CHARSET = re.compile("^[-a-z0-9]+$")
_ONE_LETTER = re.compile("[a-z]")


def port_name(name: str) -> list[str]:
    """An IANA_SVC_NAME (RFC 6335): what container and service port names must be."""
    errs = []
    if len(name) > 15:
        errs.append(max_len_error(15))
    if not _PORT_NAME_CHARSET.match(name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _ONE_LETTER.search(name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name and (name[0] == "-" or name[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def env_var_name(name: str) -> list[str]:
    """RelaxedEnvironmentVariableValidation (on by default in 1.33): printable ASCII but '='."""
    if not name:
        return ["environment variable name " + EMPTY_ERROR]
    if any(not (32 <= ord(ch) < 127) or ch == "=" for ch in name):
        return [
            "a valid environment variable name must consist only of printable ASCII "
            "characters other than '='"
        ]
    return []


_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def config_map_key(key: str) -> list[str]:
    """A ConfigMap or Secret data key: a file name under the volume's mount."""
    errs = []
    if len(key) > 253:
        errs.append(max_len_error(253))
    if not _CONFIG_KEY.match(key):
        errs.append(
            regex_error(
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                "[-._a-zA-Z0-9]+",
                "key.name",
                "KEY_NAME",
                "key-name",
            )
        )
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def path_segment_name(name: str, prefix: bool = False) -> list[str]:
    """`ValidatePathSegmentName`: what any name must be to sit in a URL path."""
    if not prefix and name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{ch}'" for ch in ("/", "%") if ch in name]


# --- name validators, as ValidateObjectMeta takes them (name, is_prefix) ---------------


def _mask_trailing_dash(name: str) -> str:
    return name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name


def name_is_dns_subdomain(name: str, prefix: bool = False) -> list[str]:
    return dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool = False) -> list[str]:
    return dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool = False) -> list[str]:
    return dns1035_label(_mask_trailing_dash(name) if prefix else name)


def name_is_path_segment(name: str, prefix: bool = False) -> list[str]:
    return path_segment_name(name, prefix)


# --- metadata ----------------------------------------------------------------------

ANNOTATIONS_SIZE_LIMIT = 256 * 1024


def label_causes(labels: Any, path: str) -> list[Cause]:
    """`ValidateLabels`: every key a qualified name, every value a label value."""
    causes: list[Cause] = []
    for key, value in (labels or {}).items():
        causes.extend(invalid(path, key, m) for m in qualified_name(key))
        causes.extend(invalid(path, value, m) for m in label_value(str(value)))
    return causes


def annotation_causes(annotations: Any, path: str) -> list[Cause]:
    """`ValidateAnnotations`: keys are case-insensitive qualified names; 256 KiB in total."""
    causes: list[Cause] = []
    annotations = annotations or {}
    for key in annotations:
        causes.extend(invalid(path, key, m) for m in qualified_name(key.lower()))
    size = sum(len(k.encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_SIZE_LIMIT:
        causes.append(too_long(path, ANNOTATIONS_SIZE_LIMIT))
    return causes


def validate_object_meta(
    obj: Obj,
    namespaced: bool,
    name_validator: NameValidator = name_is_dns_subdomain,
    path: str = "metadata",
) -> list[Cause]:
    """`ValidateObjectMeta`: name (or generateName), namespace, labels, annotations."""
    meta = obj.get("metadata") or {}
    causes: list[Cause] = []
    generate_name = meta.get("generateName") or ""
    if generate_name:
        causes.extend(
            invalid(f"{path}.generateName", generate_name, m)
            for m in name_validator(generate_name, True)
        )
    name = meta.get("name") or ""
    if not name:
        causes.append(required(f"{path}.name", "name or generateName is required"))
    else:
        causes.extend(invalid(f"{path}.name", name, m) for m in name_validator(name, False))
    ns = meta.get("namespace") or ""
    if namespaced:
        if not ns:
            causes.append(required(f"{path}.namespace"))
        else:
            causes.extend(invalid(f"{path}.namespace", ns, m) for m in dns1123_label(ns))
    elif ns:
        causes.append(forbidden(f"{path}.namespace", "not allowed on this type"))
    generation = meta.get("generation")
    if isinstance(generation, int) and generation < 0:
        causes.append(
            invalid(f"{path}.generation", generation, "must be greater than or equal to 0")
        )
    causes.extend(label_causes(meta.get("labels"), f"{path}.labels"))
    causes.extend(annotation_causes(meta.get("annotations"), f"{path}.annotations"))
    for finalizer in meta.get("finalizers") or []:
        causes.extend(
            invalid(f"{path}.finalizers", finalizer, m) for m in qualified_name(finalizer)
        )
    return causes


def validate_object_meta_update(new: Obj, old: Obj, path: str = "metadata") -> list[Cause]:
    """`ValidateObjectMetaUpdate`: name, namespace, uid and creationTimestamp never change."""
    nm, om = new.get("metadata") or {}, old.get("metadata") or {}
    causes = []
    for key in ("name", "namespace", "uid", "creationTimestamp"):
        if (nm.get(key) or "") != (om.get(key) or "") and nm.get(key) is not None:
            causes.append(immutable(f"{path}.{key}", nm.get(key)))
    return causes


# --- label selectors (metav1validation.ValidateLabelSelector) -------------------------

SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def label_selector_causes(selector: Any, path: str) -> list[Cause]:
    """A `LabelSelector` object: matchLabels valid labels, matchExpressions well-formed."""
    if not selector:
        return []
    causes = label_causes(selector.get("matchLabels"), f"{path}.matchLabels")
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        epath = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator", "")
        values = expr.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                causes.append(
                    required(
                        f"{epath}.values", "must be specified when `operator` is 'In' or 'NotIn'"
                    )
                )
        elif op in ("Exists", "DoesNotExist"):
            if values:
                causes.append(
                    forbidden(
                        f"{epath}.values",
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            causes.append(invalid(f"{epath}.operator", op, "not a valid selector operator"))
        key = expr.get("key", "")
        causes.extend(invalid(f"{epath}.key", key, m) for m in qualified_name(key))
        for v in values:
            causes.extend(invalid(f"{epath}.values", v, m) for m in label_value(str(v)))
    return causes


def selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    """Whether a `LabelSelector` object selects these labels (empty selects everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def non_negative(path: str, value: Any) -> list[Cause]:
    if isinstance(value, int | float) and value < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


# --- quantities (k8s.io/apimachinery/pkg/api/resource) ------------------------------

QUANTITY_REGEX_MSG = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BINARY_SUFFIX = {v: k for k, v in _BINARY.items()}


class QuantityError(ValueError):
    pass


@functools.lru_cache(maxsize=4096)
def parse_quantity(value: str | int | float) -> Fraction:
    """A quantity's exact value: `500m` → 1/2, `1Gi` → 1073741824, `1e3` → 1000."""
    if isinstance(value, bool):
        raise QuantityError(QUANTITY_REGEX_MSG)
    if isinstance(value, int | float):
        return Fraction(Decimal(str(value)))
    m = _QUANTITY.match(value.strip() if isinstance(value, str) else "")
    if not m or value.strip() != value:
        raise QuantityError(QUANTITY_REGEX_MSG)
    number, suffix = m.groups()
    try:
        base = Fraction(Decimal(number))
    except ArithmeticError as exc:
        raise QuantityError(QUANTITY_REGEX_MSG) from exc
    if suffix in _BINARY:
        return base * 1024 ** _BINARY[suffix]
    if suffix in _DECIMAL:
        return base * Fraction(10) ** _DECIMAL[suffix]
    if suffix[:1] in ("e", "E"):
        try:
            return base * Fraction(10) ** int(suffix[1:])
        except ValueError as exc:
            raise QuantityError(QUANTITY_REGEX_MSG) from exc
    raise QuantityError(QUANTITY_REGEX_MSG)


def compare_quantities(a: str | int | float, b: str | int | float) -> int:
    """-1, 0 or 1, as `Quantity.Cmp`."""
    x, y = parse_quantity(a), parse_quantity(b)
    return (x > y) - (x < y)


def format_quantity(value: Fraction, binary: bool = False) -> str:
    """The canonical form upstream prints: `1Gi`, `500m`, `1500m`, `2`, `128974848`.

    Binary SI is kept only when the value is a whole multiple of 1024 (as upstream
    falls back to decimal otherwise); values finer than a nano round up.
    """
    sign = "-" if value < 0 else ""
    value = abs(value)
    if binary and value.denominator == 1 and value >= 1024:
        exp = 0
        n = value.numerator
        while n % 1024 == 0 and exp < 6:
            n //= 1024
            exp += 1
        if exp:
            return f"{sign}{n}{_BINARY_SUFFIX[exp]}"
    if binary and value.denominator == 1:
        return f"{sign}{value.numerator}"
    nanos = -((-value * 10**9) // 1)  # ceil to whole nanos
    if nanos == 0:
        return "0"
    exp = -9
    n = int(nanos)
    while n % 1000 == 0 and exp < 18:
        n //= 1000
        exp += 3
    return f"{sign}{n}{_DECIMAL_SUFFIX[exp]}"


def canonical_quantity(text: str | int | float) -> str:
    """`Quantity.String()` of a parsed quantity, keeping binary suffixes binary."""
    binary = isinstance(text, str) and any(text.endswith(s) for s in _BINARY)
    return format_quantity(parse_quantity(text), binary)


def quantity_causes(path: str, value: Any) -> list[Cause]:
    """`ValidateResourceQuantityValue`: a well-formed, non-negative quantity."""
    try:
        q = parse_quantity(value)
    except QuantityError as exc:
        return [invalid(path, value, str(exc))]
    if q < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []
