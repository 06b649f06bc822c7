"""Label and field selectors, parsed and printed exactly as upstream does.

Label selectors follow `k8s.io/apimachinery/pkg/labels/selector.go`: a hand-written lexer
and recursive-descent parser for `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`,
`!a`, `a>1`, `a<1`; requirements sorted by key; upstream's error texts (they reach users as
`Error from server (BadRequest): ...`). A `LabelSelector` API object (matchLabels +
matchExpressions) converts into the same form, as `metav1.LabelSelectorAsSelector` does,
and `str()` gives back the canonical string (the scale subresource's `status.selector`).

Field selectors follow `k8s.io/apimachinery/pkg/fields/selector.go`: comma-separated
`field=value`, `field==value`, `field!=value` terms with `\\`-escaped values. A field
selector matches through getters (`metadata.name` → the object's name), and a field
without a getter is upstream's BadRequest `field label not supported: X`.

Selectors run on every list and on every watch event for every watcher, so each one is
compiled once into a closure specialised for its requirements (a one-label equality is a
single dict lookup); matching never re-parses or re-validates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nanokube.api.errors import BadRequest

Labels = Mapping[str, str]
Getters = Mapping[str, Callable[[dict[str, Any]], str]]

IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
GREATER_THAN, LESS_THAN, EXISTS, DOES_NOT_EXIST = "gt", "lt", "exists", "!"
BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)
OPERATORS = (*BINARY_OPERATORS, EXISTS, DOES_NOT_EXIST)

_EMPTY: dict[str, str] = {}
_INT64 = re.compile(r"[+-]?[0-9]+\Z")


# --- validation, in upstream's words --------------------------------------------------------

_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_RE = re.compile(f"(?:{_LABEL_KEY_FMT})\\Z")
_LABEL_VALUE_FMT = f"({_LABEL_KEY_FMT})?"
_LABEL_VALUE_RE = re.compile(f"(?:{_LABEL_VALUE_FMT})\\Z")
_DNS_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN_FMT = f"{_DNS_LABEL}(\\.{_DNS_LABEL})*"
_DNS_SUBDOMAIN_RE = re.compile(f"(?:{_DNS_SUBDOMAIN_FMT})\\Z")
_KEY_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character"
)
_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character"
)
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character"
)


def _regex_error(msg: str, regex: str, *examples: str) -> str:
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{regex}')"


def label_key_errors(key: str) -> list[str]:
    """upstream IsQualifiedName: `[prefix/]name`, a DNS subdomain prefix, a 63-byte name."""
    parts = key.split("/")
    errs: list[str] = []
    if len(parts) > 2:
        return [
            "a valid label key "
            + _regex_error(_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix.encode()) > 253:
                errs.append("prefix part must be no more than 253 bytes")
            if not _DNS_SUBDOMAIN_RE.match(prefix):
                errs.append(
                    "prefix part " + _regex_error(_SUBDOMAIN_MSG, _DNS_SUBDOMAIN_FMT, "example.com")
                )
    if not name:
        errs.append("name part must be non-empty")
    elif len(name.encode()) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not _LABEL_KEY_RE.match(name):
        errs.append(
            "name part " + _regex_error(_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    """upstream IsValidLabelValue: empty, or 63 bytes of `[-A-Za-z0-9_.]` in alphanumerics."""
    errs = []
    if len(value.encode()) > 63:
        errs.append("must be no more than 63 bytes")
    if not _LABEL_VALUE_RE.match(value):
        errs.append(_regex_error(_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _invalid(path: str, value: Any, detail: str) -> str:
    """A `field.Invalid` error's text: `path: Invalid value: "v": detail`."""
    shown = json.dumps(value, ensure_ascii=False)
    return f"{path}: Invalid value: {shown}: {detail}"


def _aggregate(errors: list[str]) -> str:
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


# --- label selectors ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    """One label requirement: `key operator values` (values empty for exists / !)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, operator: str, values: Iterable[str] = ()) -> Requirement:
        """Validated construction (upstream NewRequirement); BadRequest on any violation."""
        vals = list(values)
        errs = []
        if key_errs := label_key_errors(key):
            errs.append(_invalid("key", key, "; ".join(key_errs)))
        if operator in (IN, NOT_IN):
            if not vals:
                errs.append(
                    _invalid(
                        "values", vals, "for 'in', 'notin' operators, values set can't be empty"
                    )
                )
        elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
            if len(vals) != 1:
                errs.append(
                    _invalid("values", vals, "exact-match compatibility requires one single value")
                )
        elif operator in (EXISTS, DOES_NOT_EXIST):
            if vals:
                errs.append(
                    _invalid(
                        "values", vals, "values set must be empty for exists and does not exist"
                    )
                )
        elif operator in (GREATER_THAN, LESS_THAN):
            if len(vals) != 1:
                errs.append(
                    _invalid(
                        "values", vals, "for 'Gt', 'Lt' operators, exactly one value is required"
                    )
                )
            for i, v in enumerate(vals):
                if _int64(v) is None:
                    errs.append(
                        _invalid(
                            f"values[{i}]",
                            v,
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        )
                    )
        else:
            supported = ", ".join(json.dumps(o) for o in OPERATORS)
            errs.append(
                f"operator: Unsupported value: {json.dumps(operator)}: "
                f"supported values: {supported}"
            )
        for i, v in enumerate(vals):
            if value_errs := label_value_errors(v):
                errs.append(_invalid(f"values[{i}][{key}]", v, "; ".join(value_errs)))
        if errs:
            raise BadRequest(_aggregate(errs))
        return cls(key, operator, tuple(vals))

    def matches(self, labels: Labels) -> bool:
        return _compile_requirement(self)(labels)

    def __str__(self) -> str:
        if self.operator == EXISTS:
            return self.key
        if self.operator == DOES_NOT_EXIST:
            return "!" + self.key
        shown = ",".join(sorted(self.values)) if len(self.values) > 1 else "".join(self.values)
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({shown})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{shown}"


def _int64(text: str) -> int | None:
    if not _INT64.match(text):
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


def _compile_requirement(req: Requirement) -> Callable[[Labels], bool]:
    key, op, values = req.key, req.operator, req.values
    if op in (IN, EQUALS, DOUBLE_EQUALS):
        if len(values) == 1:
            only = values[0]
            return lambda labels: labels.get(key) == only
        allowed = frozenset(values)
        return lambda labels: labels.get(key) in allowed
    if op in (NOT_IN, NOT_EQUALS):
        if len(values) == 1:
            other = values[0]
            return lambda labels: labels.get(key) != other
        banned = frozenset(values)
        return lambda labels: labels.get(key) not in banned
    if op == EXISTS:
        return lambda labels: key in labels
    if op == DOES_NOT_EXIST:
        return lambda labels: key not in labels
    bound = _int64(values[0]) if len(values) == 1 else None
    if bound is None:
        return lambda labels: False
    greater = op == GREATER_THAN

    def compare(labels: Labels) -> bool:
        have = labels.get(key)
        number = _int64(have) if isinstance(have, str) else None
        if number is None:
            return False
        return number > bound if greater else number < bound

    return compare


@dataclass(frozen=True, slots=True, eq=False)
class LabelSelector:
    """An AND of label requirements, compiled into `matches` on construction.

    `nothing` is upstream's `labels.Nothing()` (a nil LabelSelector object): it matches no
    object, unlike the empty selector which matches every object.
    """

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False
    matches: Callable[[Labels | None], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "matches", _compile_selector(self.requirements, self.nothing))

    @property
    def empty(self) -> bool:
        """True when the selector restricts nothing (matches every object)."""
        return not self.requirements and not self.nothing

    def matches_object(self, obj: Mapping[str, Any]) -> bool:
        """Match an API object by its `metadata.labels`."""
        metadata: Mapping[str, Any] = obj.get("metadata") or _EMPTY
        return self.matches(metadata.get("labels"))

    def requires_exact_match(self, key: str) -> str | None:
        """The single value `key` must have (for indexing), or None (upstream semantics)."""
        for req in self.requirements:
            if req.key == key:
                if req.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(req.values) == 1:
                    return req.values[0]
                return None
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelSelector):
            return NotImplemented
        return (self.requirements, self.nothing) == (other.requirements, other.nothing)

    def __hash__(self) -> int:
        return hash((self.requirements, self.nothing))

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _compile_selector(
    requirements: tuple[Requirement, ...], nothing: bool
) -> Callable[[Labels | None], bool]:
    if nothing:
        return lambda labels: False
    if not requirements:
        return lambda labels: True
    checks = tuple(_compile_requirement(r) for r in requirements)
    if len(checks) == 1:
        (check,) = checks

        def match_one(labels: Labels | None) -> bool:
            return check(labels if labels is not None else _EMPTY)

        return match_one

    def match_all(labels: Labels | None) -> bool:
        if labels is None:
            labels = _EMPTY
        for c in checks:
            if not c(labels):
                return False
        return True

    return match_all


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)


def label_selector_from_set(labels: Labels | None) -> LabelSelector:
    """Equality requirements for every label, unvalidated (upstream SelectorFromSet)."""
    reqs = [Requirement(k, EQUALS, (v,)) for k, v in (labels or {}).items()]
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


def label_selector_from_object(selector: Mapping[str, Any] | None) -> LabelSelector:
    """A `LabelSelector` API object as a selector (upstream LabelSelectorAsSelector).

    None matches nothing; an empty object matches everything. BadRequest when invalid.
    """
    if selector is None:
        return NOTHING
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not match_labels and not expressions:
        return EVERYTHING
    reqs = [Requirement.new(k, EQUALS, [v]) for k, v in match_labels.items()]
    operators = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}
    for expr in expressions:
        op = operators.get(expr.get("operator", ""))
        if op is None:
            raise BadRequest(
                f"{json.dumps(expr.get('operator', ''))} is not a valid label selector operator"
            )
        reqs.append(Requirement.new(expr.get("key", ""), op, expr.get("values") or []))
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


def parse_label_selector(text: str) -> LabelSelector:
    """Parse a `labelSelector` query string; BadRequest with upstream's message if invalid."""
    if not text.strip():
        return EVERYTHING
    try:
        reqs = _Parser(text).parse()
    except _SyntaxError as exc:
        raise BadRequest(str(exc)) from None
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


# The label selector lexer and parser (upstream's, token for token).

_END, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPEN, _ERR = range(14)
_TOKENS = {
    ")": _CLOSE,
    ",": _COMMA,
    "!": _NOT,
    "==": _DEQ,
    "=": _EQ,
    ">": _GT,
    "in": _IN,
    "<": _LT,
    "!=": _NEQ,
    "notin": _NOTIN,
    "(": _OPEN,
}
_SPECIAL = frozenset("=!(),><")
_SPACE = frozenset(" \t\r\n")
_OPERATOR_OF = {
    _IN: IN,
    _EQ: EQUALS,
    _DEQ: DOUBLE_EQUALS,
    _GT: GREATER_THAN,
    _LT: LESS_THAN,
    _NOTIN: NOT_IN,
    _NEQ: NOT_EQUALS,
}


class _SyntaxError(Exception):
    pass


def _lex(text: str) -> list[tuple[int, str]]:
    items = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in _SPACE:
            pos += 1
        if pos >= n:
            items.append((_END, ""))
            return items
        if text[pos] in _SPECIAL:
            buffer, last = "", None
            while pos < n and text[pos] in _SPECIAL:
                token = _TOKENS.get(buffer + text[pos])
                if token is None and last is not None:
                    break
                buffer += text[pos]
                pos += 1
                if token is not None:
                    last = (token, buffer)
            items.append(last or (_ERR, f"error expected: keyword found '{buffer}'"))
        else:
            start = pos
            while pos < n and text[pos] not in _SPECIAL and text[pos] not in _SPACE:
                pos += 1
            word = text[start:pos]
            items.append((_TOKENS.get(word, _ID), word))


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def _peek(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.items[self.pos]
        return (_ID if values and tok in (_IN, _NOTIN) else tok), lit

    def _next(self, values: bool = True) -> tuple[int, str]:
        item = self._peek(values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self._peek()
            if tok == _END:
                return reqs
            if tok not in (_ID, _NOT):
                raise _SyntaxError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self._requirement())
            except (_SyntaxError, BadRequest) as exc:
                raise _SyntaxError(f"unable to parse requirement: {exc}") from None
            tok, lit = self._next()
            if tok == _END:
                return reqs
            if tok != _COMMA:
                raise _SyntaxError(f"found '{lit}', expected: ',' or 'end of string'")
            tok, lit = self._peek()
            if tok not in (_ID, _NOT):
                raise _SyntaxError(f"found '{lit}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        operator = ""
        tok, key = self._next()
        if tok == _NOT:
            operator = DOES_NOT_EXIST
            tok, key = self._next()
        if tok != _ID:
            raise _SyntaxError(f"found '{key}', expected: identifier")
        if errs := label_key_errors(key):
            raise _SyntaxError(_invalid("<nil>", key, "; ".join(errs)))
        if operator == DOES_NOT_EXIST or self._peek()[0] in (_END, _COMMA):
            # After `!key` anything but `,` or the end fails in the caller, as upstream.
            return Requirement.new(key, operator or EXISTS)
        tok, lit = self._next(values=False)
        op = _OPERATOR_OF.get(tok)
        if op is None:
            raise _SyntaxError(f"found '{lit}', expected: {', '.join(BINARY_OPERATORS)}")
        values = self._set_values() if op in (IN, NOT_IN) else self._exact_value()
        return Requirement.new(key, op, sorted(values))

    def _set_values(self) -> set[str]:
        tok, lit = self._next()
        if tok != _OPEN:
            raise _SyntaxError(f"found '{lit}' expected: '('")
        tok, lit = self._peek()
        if tok == _CLOSE:
            self._next()
            return {""}
        if tok not in (_ID, _COMMA):
            raise _SyntaxError(f"found '{lit}', expected: ',', ')' or identifier")
        values = self._identifiers()
        if self._next()[0] != _CLOSE:
            raise _SyntaxError(f"found '{lit}', expected: ')'")
        return values

    def _identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self._next()
            if tok == _ID:
                values.add(lit)
                tok2, lit2 = self._peek()
                if tok2 == _CLOSE:
                    return values
                if tok2 != _COMMA:
                    raise _SyntaxError(f"found '{lit2}', expected: ',' or ')'")
            elif tok == _COMMA:
                if not values:
                    values.add("")
                tok2, _ = self._peek()
                if tok2 in (_CLOSE, _COMMA):
                    values.add("")
                if tok2 == _CLOSE:
                    return values
            else:
                raise _SyntaxError(f"found '{lit}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        tok, _ = self._peek()
        if tok in (_END, _COMMA):
            return {""}
        tok, lit = self._next()
        if tok == _ID:
            return {lit}
        raise _SyntaxError(f"found '{lit}', expected: identifier")


# --- field selectors ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """One field term: `field=value`, `field==value` or `field!=value` (value unescaped)."""

    field: str
    operator: str
    value: str

    def __str__(self) -> str:
        op = NOT_EQUALS if self.operator == NOT_EQUALS else EQUALS
        return f"{self.field}{op}{escape_field_value(self.value)}"


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """An AND of field terms; `compile` turns it into a matcher over objects."""

    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def requires_exact_match(self, name: str) -> str | None:
        """The value an `=`/`==` term demands of `name` (e.g. a watch on one object)."""
        for req in self.requirements:
            if req.field == name and req.operator != NOT_EQUALS:
                return req.value
        return None

    def compile(self, getters: Getters) -> Callable[[dict[str, Any]], bool]:
        """A matcher reading fields through `getters`; BadRequest for an unsupported field."""
        checks = []
        for req in self.requirements:
            getter = getters.get(req.field)
            if getter is None:
                raise BadRequest(f"field label not supported: {req.field}")
            checks.append(_compile_field(getter, req.operator != NOT_EQUALS, req.value))
        if not checks:
            return lambda obj: True
        if len(checks) == 1:
            return checks[0]

        def match_all(obj: dict[str, Any]) -> bool:
            for c in checks:
                if not c(obj):
                    return False
            return True

        return match_all

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _compile_field(
    getter: Callable[[dict[str, Any]], str], equal: bool, value: str
) -> Callable[[dict[str, Any]], bool]:
    if equal:
        return lambda obj: (getter(obj) or "") == value
    return lambda obj: (getter(obj) or "") != value


def escape_field_value(value: str) -> str:
    """Escape `\\`, `,` and `=` in a field selector value."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out = []
    escaped = False
    for c in value:
        if escaped:
            if c not in "\\,=":
                raise BadRequest(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c in ",=":
            raise BadRequest(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if escaped:
        raise BadRequest("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    terms, start, escaped = [], 0, False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def parse_field_selector(text: str) -> FieldSelector:
    """Parse a `fieldSelector` query string; BadRequest with upstream's message if invalid."""
    if not text:
        return FieldSelector()
    reqs = []
    for term in sorted(_split_terms(text)):
        if not term:
            continue
        for i in range(len(term)):
            op = next((o for o in ("!=", "==", "=") if term.startswith(o, i)), None)
            if op is not None:
                value = _unescape_field_value(term[i + len(op) :])
                if term[:i] or value:  # upstream drops a term with neither field nor value
                    reqs.append(FieldRequirement(term[:i], op, value))
                break
        else:
            raise BadRequest(f"invalid selector: '{text}'; can't understand '{term}'")
    return FieldSelector(tuple(reqs))


def compile_field_selector(text: str, getters: Getters) -> Callable[[dict[str, Any]], bool]:
    """Parse and compile in one step (what a list or watch handler wants)."""
    return parse_field_selector(text).compile(getters)
