"""Validation primitives: upstream's exact messages for names, labels, ports, env names,
quantities (parse, compare, canonical form), object metadata and label selectors."""

from fractions import Fraction

import pytest

from nanokube.api import validators as v

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    r"for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


# --- names ---------------------------------------------------------------------------


def test_dns1123_subdomain_message_is_upstreams() -> None:
    assert v.dns1123_subdomain("Bad_Name") == [SUBDOMAIN_MSG]
    assert v.dns1123_subdomain("web-1.example") == []


def test_dns1123_label_message_keeps_upstreams_double_space() -> None:
    assert v.dns1123_label("a.b") == [LABEL_MSG]
    assert v.dns1123_label("x" * 64) == ["must be no more than 63 characters"]
    assert v.dns1123_label("ok-1") == []


def test_dns1035_label_must_start_with_a_letter() -> None:
    assert v.dns1035_label("web") == []
    [msg] = v.dns1035_label("1web")
    assert msg.startswith("a DNS-1035 label must consist of lower case alphanumeric characters")
    assert "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?'" in msg


def test_generate_name_prefix_may_end_with_a_dash() -> None:
    assert v.name_is_dns_subdomain("web-", True) == []
    assert v.name_is_dns_subdomain("web-", False) == [SUBDOMAIN_MSG]


def test_path_segment_names() -> None:
    assert v.path_segment_name("..") == ["may not be '..'"]
    assert v.path_segment_name("a/b%c") == ["may not contain '/'", "may not contain '%'"]


# --- labels and annotations -------------------------------------------------------------


def test_qualified_name_prefix_and_name_parts() -> None:
    assert v.qualified_name("app.kubernetes.io/name") == []
    assert v.qualified_name("/x") == ["prefix part must be non-empty"]
    [msg] = v.qualified_name("a/b/c")
    assert msg.startswith("a qualified name must consist of alphanumeric characters")
    assert msg.endswith("with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")
    [msg] = v.qualified_name("-bad")
    assert msg.startswith("name part must consist of alphanumeric characters, '-', '_' or '.'")


def test_label_values() -> None:
    assert v.label_value("") == []
    assert v.label_value("v1.2_x") == []
    assert v.label_value("a" * 64)[0] == "must be no more than 63 characters"
    assert v.label_value("bad value")[0].startswith("a valid label must be an empty string")


def test_label_causes_report_key_and_value_at_the_labels_path() -> None:
    causes = v.label_causes({"bad key": "ok", "k": "bad value"}, "metadata.labels")
    assert [c.field for c in causes] == ["metadata.labels", "metadata.labels"]
    assert causes[0].message.startswith('Invalid value: "bad key": name part must consist')
    assert causes[1].message.startswith('Invalid value: "bad value": a valid label')


def test_annotation_keys_are_case_insensitive_and_size_limited() -> None:
    assert v.annotation_causes({"Example.COM/Key": "x"}, "metadata.annotations") == []
    [cause] = v.annotation_causes({"k": "x" * (256 * 1024)}, "metadata.annotations")
    assert cause.message == "Too long: may not be more than 262144 bytes"
    assert cause.reason == "FieldValueTooLong"


# --- ports and env ----------------------------------------------------------------------


def test_port_numbers_and_names() -> None:
    assert v.port_num(-1) == ["must be between 1 and 65535, inclusive"]
    assert v.port_num(65535) == []
    assert v.port_name("http") == []
    assert v.port_name("123") == ["must contain at least one letter (a-z)"]
    assert v.port_name("a--b") == ["must not contain consecutive hyphens"]
    assert v.port_name("very-long-port-name") == ["must be no more than 15 characters"]
    assert "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)" in v.port_name(
        "HTTP"
    )


def test_env_var_names_are_relaxed_as_in_1_33() -> None:
    assert v.env_var_name("1-weird.NAME") == []
    assert v.env_var_name("A=B") == [
        "a valid environment variable name must consist only of printable ASCII characters "
        "other than '='"
    ]
    assert v.env_var_name("") == ["environment variable name must be non-empty"]


def test_config_keys() -> None:
    assert v.config_map_key("app.properties") == []
    assert v.config_map_key("..data") == ["must not start with '..'"]
    assert v.config_map_key("a/b")[0].startswith("a valid config key must consist of")


# --- quantities -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("1Gi", Fraction(2**30)),
        ("1.5", Fraction(3, 2)),
        ("1e3", Fraction(1000)),
        ("2k", Fraction(2000)),
        ("100n", Fraction(1, 10**7)),
        (3, Fraction(3)),
    ],
)
def test_parse_quantity(text: str | int, value: Fraction) -> None:
    assert v.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1Gb", "abc", "1.2.3", " 1", "--1"])
def test_malformed_quantities_carry_upstreams_message(text: str) -> None:
    with pytest.raises(v.QuantityError, match="quantities must match the regular expression"):
        v.parse_quantity(text)


def test_compare_quantities() -> None:
    assert v.compare_quantities("500m", "0.5") == 0
    assert v.compare_quantities("1Gi", "1G") == 1
    assert v.compare_quantities("999Mi", "1Gi") == -1


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("1000m", "1"),
        ("0.5", "500m"),
        ("1536Mi", "1536Mi"),
        ("2048Ki", "2Mi"),
        ("1500m", "1500m"),
        ("0", "0"),
    ],
)
def test_canonical_quantity(text: str, canonical: str) -> None:
    assert v.canonical_quantity(text) == canonical


def test_quantity_causes() -> None:
    assert v.quantity_causes("x", "1Gi") == []
    [cause] = v.quantity_causes("x", "-1")
    assert cause.message == 'Invalid value: "-1": must be greater than or equal to 0'


# --- object metadata ---------------------------------------------------------------------


def test_invalid_name_reads_as_upstreams_cause() -> None:
    obj = {"metadata": {"name": "Bad_Name", "namespace": "default"}}
    [cause] = v.validate_object_meta(obj, True)
    assert cause.to_dict() == {
        "reason": "FieldValueInvalid",
        "message": f'Invalid value: "Bad_Name": {SUBDOMAIN_MSG}',
        "field": "metadata.name",
    }


def test_name_namespace_and_scope() -> None:
    [cause] = v.validate_object_meta({"metadata": {"namespace": "default"}}, True)
    assert (cause.field, cause.message) == (
        "metadata.name",
        "Required value: name or generateName is required",
    )
    [cause] = v.validate_object_meta({"metadata": {"name": "x"}}, True)
    assert (cause.field, cause.reason) == ("metadata.namespace", "FieldValueRequired")
    [cause] = v.validate_object_meta({"metadata": {"name": "x", "namespace": "ns"}}, False)
    assert cause.message == "Forbidden: not allowed on this type"


def test_generate_name_is_validated_as_a_prefix() -> None:
    obj = {"metadata": {"generateName": "Web-", "name": "web-abcde", "namespace": "d"}}
    [cause] = v.validate_object_meta(obj, True)
    assert cause.field == "metadata.generateName"


def test_meta_update_keeps_identity() -> None:
    old = {"metadata": {"name": "a", "namespace": "d", "uid": "1"}}
    new = {"metadata": {"name": "b", "namespace": "d", "uid": "1"}}
    [cause] = v.validate_object_meta_update(new, old)
    assert (cause.field, cause.message) == (
        "metadata.name",
        'Invalid value: "b": field is immutable',
    )


# --- label selectors -------------------------------------------------------------------


def test_label_selector_causes() -> None:
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In"},
            {"key": "env", "operator": "Exists", "values": ["x"]},
            {"key": "k", "operator": "Near", "values": ["x"]},
        ],
    }
    causes = v.label_selector_causes(selector, "spec.selector")
    assert [f"{c.field}: {c.message}" for c in causes] == [
        "spec.selector.matchExpressions[0].values: Required value: "
        "must be specified when `operator` is 'In' or 'NotIn'",
        "spec.selector.matchExpressions[1].values: Forbidden: "
        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        'spec.selector.matchExpressions[2].operator: Invalid value: "Near": '
        "not a valid selector operator",
    ]


def test_selector_matches() -> None:
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
    }
    assert v.selector_matches(selector, {"app": "web", "tier": "fe"})
    assert not v.selector_matches(selector, {"app": "web", "tier": "db"})
    assert v.selector_matches({}, {"any": "thing"})


def test_cause_builders_format_values_as_go_does() -> None:
    assert v.invalid("f", 3, "bad").message == "Invalid value: 3: bad"
    assert v.invalid("f", True, "bad").message == "Invalid value: true: bad"
    assert v.not_supported("f", "X", ("A", "B")).message == (
        'Unsupported value: "X": supported values: "A", "B"'
    )
    assert v.duplicate("f", "a").message == 'Duplicate value: "a"'
    assert v.required("f").message == "Required value"
    assert v.not_found("f", "vol").message == 'Not found: "vol"'
