"""Label and field selectors.

Aspects: label selector parsing (every operator, whitespace, value sets, keywords used as
keys and values), canonical printing (sorted by key, sorted values), matching semantics
(notin/!= match absent keys, gt/lt compare integers), upstream's error messages as 400
BadRequest, LabelSelector objects (nil matches nothing, empty matches everything), field
selector parsing with escapes, and compiled field matchers over getters.
"""

from __future__ import annotations

from typing import Any

import pytest

from nanokube.api.errors import BadRequest
from nanokube.api.selectors import (
    EVERYTHING,
    NOTHING,
    FieldRequirement,
    LabelSelector,
    Requirement,
    compile_field_selector,
    escape_field_value,
    label_key_errors,
    label_selector_from_object,
    label_selector_from_set,
    label_value_errors,
    parse_field_selector,
    parse_label_selector,
)

# --- parsing and printing -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "x=a",
        "x=a,y=b,z=c",
        "",
        "x!=a,y=b",
        "x=",
        "x=,z=",
        "!x",
        "x>1",
        "x>1,z<5",
        "x==a",
        "x in (a,b)",
        "x notin (a)",
        "example.com/x=a",
    ],
)
def test_canonical_strings_round_trip(text: str) -> None:
    assert str(parse_label_selector(text)) == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("x= ", "x="),
        ("x= ,z= ", "x=,z="),
        (" x = a , y ", "x=a,y"),
        ("x=a,a=x", "a=x,x=a"),
        ("z in (c,a,b),a", "a,z in (a,b,c)"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        ("x in (a,a)", "x in (a)"),
        ("x in (,)", "x in ()"),
        ("x in(a)", "x in (a)"),
        ("\tx\n=\ra", "x=a"),
        ("in in (in),notin notin (notin)", "in in (in),notin notin (notin)"),
    ],
)
def test_parse_normalises(text: str, canonical: str) -> None:
    assert str(parse_label_selector(text)) == canonical


def test_parse_builds_requirements() -> None:
    selector = parse_label_selector("env in (prod,dev),!beta,tier,x!=y,n>3")
    assert selector.requirements == (
        Requirement("beta", "!"),
        Requirement("env", "in", ("dev", "prod")),
        Requirement("n", "gt", ("3",)),
        Requirement("tier", "exists"),
        Requirement("x", "!=", ("y",)),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x=a||y=b", 'unable to parse requirement: values[0][x]: Invalid value: "a||y": '),
        ("x==a==b", "found '==', expected: ',' or 'end of string'"),
        ("!x=a", "found '=', expected: ',' or 'end of string'"),
        ("x<a", "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' "),
        ("x=a b", "found 'b', expected: ',' or 'end of string'"),
        ("x in a", "unable to parse requirement: found 'a' expected: '('"),
        ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("x in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
        ("x in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("x,", "found '', expected: identifier after ','"),
        (",x", "found ',', expected: !, identifier, or 'end of string'"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        ("x (", "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt"),
        ("x ! y", "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, gt, lt"),
        ("x=(", "unable to parse requirement: found '(', expected: identifier"),
        ("-x", 'unable to parse requirement: <nil>: Invalid value: "-x": name part must consist'),
        ("a/b/c", 'unable to parse requirement: <nil>: Invalid value: "a/b/c": a valid label key'),
        ("x>99999999999999999999", "the value must be an integer"),
    ],
)
def test_parse_errors_are_upstreams(text: str, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_label_selector(text)
    assert info.value.code == 400
    assert info.value.message.startswith(message) or message in info.value.message


def test_validation_messages() -> None:
    assert label_key_errors("app.kubernetes.io/name") == []
    assert label_key_errors("/x") == ["prefix part must be non-empty"]
    assert label_key_errors("x" * 64) == ["name part must be no more than 63 bytes"]
    assert label_key_errors("UPPER.io/x")[0].startswith(
        "prefix part a lowercase RFC 1123 subdomain must consist of"
    )
    assert label_value_errors("") == []
    assert label_value_errors("v" * 64) == ["must be no more than 63 bytes"]
    assert label_value_errors("-a") == [
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
        "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
        "'my_value',  or '12345', regex used for validation is "
        "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    ]


def test_requirement_constructor_validates() -> None:
    assert Requirement.new("x", "in", ["b", "a"]).values == ("b", "a")
    with pytest.raises(BadRequest, match="values set can't be empty"):
        Requirement.new("x", "in", [])
    with pytest.raises(BadRequest, match="exact-match compatibility requires one single value"):
        Requirement.new("x", "=", ["a", "b"])
    with pytest.raises(BadRequest, match="values set must be empty for exists"):
        Requirement.new("x", "exists", ["a"])
    with pytest.raises(BadRequest, match='operator: Unsupported value: "~"'):
        Requirement.new("x", "~", [])
    with pytest.raises(BadRequest) as info:
        Requirement.new("-x", "in", [])
    assert info.value.message.startswith('[key: Invalid value: "-x"')


# --- matching -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("", {"x": "y"}, True),
        ("x=y", {"x": "y"}, True),
        ("x=y,z=w", {"x": "y", "z": "w"}, True),
        ("x!=y,z!=w", {"x": "z", "z": "a"}, True),
        ("notin=in", {"notin": "in"}, True),
        ("x", {"x": "z"}, True),
        ("!x", {"y": "z"}, True),
        ("x>1", {"x": "2"}, True),
        ("x<1", {"x": "0"}, True),
        ("x<1", {"x": "-1"}, True),
        ("x in (a,b)", {"x": "b"}, True),
        ("x notin (a,b)", {"y": "b"}, True),
        ("x!=y", {}, True),
        ("x=", {"x": ""}, True),
        ("x=z", {}, False),
        ("x=y", {"x": "z"}, False),
        ("x=y,z=w", {"x": "w", "z": "w"}, False),
        ("x!=y,z!=w", {"x": "z", "z": "w"}, False),
        ("x", {"y": "z"}, False),
        ("!x", {"x": "z"}, False),
        ("x>1", {"x": "0"}, False),
        ("x<1", {"x": "2"}, False),
        ("x>1", {"x": "abc"}, False),
        ("x>1", {}, False),
        ("x in (a,b)", {"x": "c"}, False),
        ("x in (a)", {}, False),
        ("x notin (a,b)", {"x": "a"}, False),
        ("x=", {}, False),
    ],
)
def test_matching(text: str, labels: dict[str, str], expected: bool) -> None:
    selector = parse_label_selector(text)
    assert selector.matches(labels) is expected
    assert all(r.matches(labels) for r in selector.requirements) is expected


def test_matching_without_labels_and_by_object() -> None:
    assert parse_label_selector("!x").matches(None)
    assert not parse_label_selector("x").matches(None)
    assert parse_label_selector("app=web").matches_object({"metadata": {"labels": {"app": "web"}}})
    assert not parse_label_selector("app=web").matches_object({"metadata": {}})
    assert parse_label_selector("!app").matches_object({})


def test_everything_and_nothing() -> None:
    assert EVERYTHING.empty and EVERYTHING.matches({"a": "b"}) and str(EVERYTHING) == ""
    assert not NOTHING.empty and not NOTHING.matches({}) and str(NOTHING) == ""
    assert parse_label_selector("") == EVERYTHING


def test_requires_exact_match() -> None:
    selector = parse_label_selector("a=1,b in (2),c in (3,4),d!=5,e")
    assert selector.requires_exact_match("a") == "1"
    assert selector.requires_exact_match("b") == "2"
    assert selector.requires_exact_match("c") is None
    assert selector.requires_exact_match("d") is None
    assert selector.requires_exact_match("zz") is None


def test_selectors_are_values() -> None:
    assert parse_label_selector("a=1,b=2") == parse_label_selector("b=2, a=1")
    assert len({parse_label_selector("a=1"), parse_label_selector("a = 1")}) == 1
    assert parse_label_selector("a=1") != parse_label_selector("a==1")


# --- LabelSelector objects ----------------------------------------------------------------


def test_label_selector_object() -> None:
    selector = label_selector_from_object(
        {
            "matchLabels": {"tier": "fe", "app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "beta", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"},
                {"key": "track", "operator": "NotIn", "values": ["canary"]},
            ],
        }
    )
    assert str(selector) == "app=web,!beta,env in (dev,prod),tier=fe,track notin (canary),zone"
    good = {"app": "web", "tier": "fe", "env": "dev", "zone": "a"}
    assert selector.matches(good)
    assert not selector.matches({**good, "beta": "1"})
    assert not selector.matches({**good, "track": "canary"})
    assert not selector.matches({**good, "env": "test"})
    assert str(parse_label_selector(str(selector))) == str(selector)


def test_label_selector_object_nil_and_empty() -> None:
    assert label_selector_from_object(None) is NOTHING
    assert label_selector_from_object({}) is EVERYTHING
    assert label_selector_from_object({"matchLabels": {}, "matchExpressions": []}).empty


def test_label_selector_object_errors() -> None:
    with pytest.raises(BadRequest, match='"Gt" is not a valid label selector operator'):
        label_selector_from_object({"matchExpressions": [{"key": "a", "operator": "Gt"}]})
    with pytest.raises(BadRequest, match="values set can't be empty"):
        label_selector_from_object({"matchExpressions": [{"key": "a", "operator": "In"}]})
    with pytest.raises(BadRequest, match="values\\[0\\]\\[a\\]: Invalid value"):
        label_selector_from_object({"matchLabels": {"a": "not valid"}})


def test_label_selector_from_set() -> None:
    selector = label_selector_from_set({"b": "2", "a": "1"})
    assert str(selector) == "a=1,b=2"
    assert selector.matches({"a": "1", "b": "2", "c": "3"})
    assert label_selector_from_set(None).empty and label_selector_from_set({}).empty


def test_selector_is_immutable() -> None:
    selector = LabelSelector((Requirement("a", "=", ("1",)),))
    with pytest.raises(AttributeError):
        selector.nothing = True  # type: ignore[misc]


# --- field selectors ----------------------------------------------------------------------

GETTERS: dict[str, Any] = {
    "metadata.name": lambda obj: obj["metadata"].get("name", ""),
    "metadata.namespace": lambda obj: obj["metadata"].get("namespace", ""),
    "spec.nodeName": lambda obj: obj.get("spec", {}).get("nodeName"),
}


def pod(name: str, node: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": name, "namespace": "default"}, "spec": {}}
    if node is not None:
        obj["spec"]["nodeName"] = node
    return obj


@pytest.mark.parametrize(
    ("text", "requirements", "canonical"),
    [
        ("", (), ""),
        ("a=b", (FieldRequirement("a", "=", "b"),), "a=b"),
        ("a==b", (FieldRequirement("a", "==", "b"),), "a=b"),
        ("a!=b", (FieldRequirement("a", "!=", "b"),), "a!=b"),
        ("a=", (FieldRequirement("a", "=", ""),), "a="),
        (
            "x=a,a=x",
            (FieldRequirement("a", "=", "x"), FieldRequirement("x", "=", "a")),
            "a=x,x=a",
        ),
        ("a=b\\,c\\=d\\\\e", (FieldRequirement("a", "=", "b,c=d\\e"),), "a=b\\,c\\=d\\\\e"),
        ("a=b,,", (FieldRequirement("a", "=", "b"),), "a=b"),
        ("=", (), ""),
    ],
)
def test_field_selector_parsing(
    text: str, requirements: tuple[FieldRequirement, ...], canonical: str
) -> None:
    selector = parse_field_selector(text)
    assert selector.requirements == requirements
    assert str(selector) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo", "invalid selector: 'foo'; can't understand 'foo'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        ("a=b\\x", "invalid field selector: invalid escape sequence: \\x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_field_selector_errors(text: str, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_field_selector(text)
    assert info.value.message == message


def test_escape_field_value() -> None:
    value = "a,b=c\\d"
    text = "metadata.name=" + escape_field_value(value)
    assert parse_field_selector(text).requirements[0].value == value


def test_field_matching() -> None:
    match = compile_field_selector("metadata.name=web,spec.nodeName!=n1", GETTERS)
    assert match(pod("web"))
    assert match(pod("web", "n2"))
    assert not match(pod("web", "n1"))
    assert not match(pod("api"))
    unscheduled = compile_field_selector("spec.nodeName=", GETTERS)
    assert unscheduled(pod("a")) and not unscheduled(pod("a", "n1"))
    assert compile_field_selector("", GETTERS)(pod("x"))
    assert compile_field_selector("metadata.namespace==default", GETTERS)(pod("x"))


def test_unsupported_field_is_400() -> None:
    with pytest.raises(BadRequest) as info:
        compile_field_selector("metadata.name=x,status.phase=Running", GETTERS)
    assert info.value.code == 400
    assert info.value.message == "field label not supported: status.phase"


def test_field_requires_exact_match() -> None:
    selector = parse_field_selector("metadata.name=web,spec.nodeName!=n1")
    assert selector.requires_exact_match("metadata.name") == "web"
    assert selector.requires_exact_match("spec.nodeName") is None
    assert parse_field_selector("").empty
