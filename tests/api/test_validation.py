"""Schema validation: what passes, upstream's decoding errors (400), required-field
causes (422), custom-resource causes in kube-openapi's wording, and unknown fields
for fieldValidation=Strict/Warn."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nanokube.api import validation
from nanokube.api.errors import BadRequest, Cause
from nanokube.api.kinds import Kind

POD = Kind("", "v1", "Pod", "pods", True)
DEPLOYMENT = Kind("apps", "v1", "Deployment", "deployments", True)
SERVICE = Kind("", "v1", "Service", "services", True)
SECRET = Kind("", "v1", "Secret", "secrets", True)
CONFIGMAP = Kind(
    "", "v1", "ConfigMap", "configmaps", True, schema_name="io.k8s.api.core.v1.ConfigMap"
)

CONTAINER: dict[str, Any] = {
    "name": "nginx",
    "image": "nginx:1.25",
    "args": ["-g", "daemon off;"],
    "env": [
        {"name": "MODE", "value": "prod"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ],
    "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}],
    "resources": {
        "limits": {"cpu": "500m", "memory": "128Mi"},
        "requests": {"cpu": 0.1, "memory": "64Mi"},
    },
    "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10},
    "readinessProbe": {"tcpSocket": {"port": 80}},
    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    "securityContext": {"runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
}
DEPLOYMENT_OBJ: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "namespace": "default",
        "labels": {"app": "web", "app.kubernetes.io/name": "web"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        "creationTimestamp": None,
    },
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1},
        },
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [CONTAINER],
                "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}],
                "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            },
        },
    },
    "status": {
        "replicas": 3,
        "conditions": [
            {"type": "Available", "status": "True", "lastUpdateTime": "2024-01-02T03:04:05Z"}
        ],
    },
}
POD_OBJ = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p"},
    "spec": {"containers": [CONTAINER]},
}
SERVICE_OBJ = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web"},
    "spec": {
        "type": "NodePort",
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}],
    },
}


def deployment(**changes: Any) -> dict[str, Any]:
    """A copy of the Deployment with dotted paths set (`spec.replicas="3"`)."""
    obj = copy.deepcopy(DEPLOYMENT_OBJ)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node: Any = obj
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[last] = value
    return obj


def decode_error(kind: Kind, obj: Any) -> str:
    with pytest.raises(BadRequest) as info:
        validation.schema_causes(kind, obj)
    return info.value.message


# --- valid objects -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "obj"),
    [
        (DEPLOYMENT, DEPLOYMENT_OBJ),
        (POD, POD_OBJ),
        (SERVICE, SERVICE_OBJ),
        (CONFIGMAP, {"data": {"a": "b"}}),
    ],
)
def test_real_manifests_are_valid(kind: Kind, obj: dict[str, Any]) -> None:
    validation.decode_check(kind, obj)
    assert validation.schema_causes(kind, obj) == []
    assert validation.unknown_fields(kind, obj) == []


def test_null_is_accepted_anywhere_as_go_decodes_it() -> None:
    obj = deployment(spec__replicas=None, spec__strategy=None)
    obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = None
    assert validation.schema_causes(DEPLOYMENT, obj) == []


def test_quantities_and_int_or_string_take_both_forms() -> None:
    obj = copy.deepcopy(POD_OBJ)
    obj["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": 2, "memory": "1.5Gi"},
        "requests": {"cpu": "1e3", "memory": "+.5E"},
    }
    obj["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = 8080
    assert validation.schema_causes(POD, obj) == []


# --- decoding errors of built-in kinds: 400 BadRequest -----------------------------------

PREFIX = 'Deployment in version "v1" cannot be handled as a Deployment: '


def test_string_for_integer_is_upstreams_unmarshal_error() -> None:
    assert decode_error(DEPLOYMENT, deployment(spec__replicas="3")) == (
        PREFIX
        + "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
    )


def test_nested_list_path_names_the_struct_and_the_field_stack() -> None:
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "80"
    assert decode_error(DEPLOYMENT, obj) == PREFIX + (
        "json: cannot unmarshal string into Go struct field "
        "ContainerPort.spec.template.spec.containers.ports.containerPort of type int32"
    )


@pytest.mark.parametrize(
    ("value", "word"),
    [(1.5, "number 1.5"), (2**40, "number 1099511627776"), (True, "bool"), ([], "array")],
)
def test_numbers_that_do_not_fit_int32(value: Any, word: str) -> None:
    obj = copy.deepcopy(POD_OBJ)
    obj["spec"]["containers"][0]["ports"][0]["containerPort"] = value
    assert decode_error(POD, obj).endswith(
        f"cannot unmarshal {word} into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32"
    )


def test_wrong_container_types_name_go_types() -> None:
    assert decode_error(DEPLOYMENT, deployment(spec__template="x")).endswith(
        "cannot unmarshal string into Go struct field DeploymentSpec.spec.template of type v1.PodTemplateSpec"
    )
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"] = {"name": "x"}
    assert decode_error(DEPLOYMENT, obj).endswith(
        "cannot unmarshal object into Go struct field PodSpec.spec.template.spec.containers of type []v1.Container"
    )


def test_map_values_name_the_map() -> None:
    obj = deployment()
    obj["metadata"]["labels"]["version"] = 1.0
    assert decode_error(DEPLOYMENT, obj).endswith(
        "cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"
    )


def test_custom_decoders_quantity_time_intorstring_base64() -> None:
    obj = copy.deepcopy(POD_OBJ)
    obj["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "lots"
    assert decode_error(POD, obj).endswith(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )
    obj["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "5x"
    assert decode_error(POD, obj).endswith("unable to parse quantity's suffix")
    assert 'parsing time "yesterday"' in decode_error(
        POD, {"metadata": {"creationTimestamp": "yesterday"}}
    )
    obj = copy.deepcopy(POD_OBJ)
    obj["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = True
    assert decode_error(POD, obj).endswith(
        "json: cannot unmarshal bool into Go value of type int32"
    )
    assert decode_error(SECRET, {"data": {"a": "hello!"}}) == (
        'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 5'
    )
    assert decode_error(SECRET, {"data": {"a": 5}}).endswith(
        "Go struct field Secret.data of type []uint8"
    )
    assert validation.schema_causes(SECRET, {"data": {"a": "aGVsbG8="}}) == []


def test_decode_check_raises_only_for_types() -> None:
    obj = deployment()
    del obj["spec"]["selector"]
    validation.decode_check(DEPLOYMENT, obj)  # a missing field is for validation, not decoding
    with pytest.raises(BadRequest):
        validation.decode_check(DEPLOYMENT, deployment(spec__replicas="3"))


# --- required fields: 422 causes --------------------------------------------------------


def test_missing_required_fields_are_all_reported_with_paths() -> None:
    obj = deployment()
    del obj["spec"]["selector"]
    del obj["spec"]["template"]["spec"]["containers"][0]["name"]
    del obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    causes = validation.schema_causes(DEPLOYMENT, obj)
    assert sorted(causes, key=lambda c: c.field) == [
        Cause("spec.selector", "Required value", "FieldValueRequired"),
        Cause("spec.template.spec.containers[0].name", "Required value", "FieldValueRequired"),
        Cause(
            "spec.template.spec.containers[0].ports[0].containerPort",
            "Required value",
            "FieldValueRequired",
        ),
    ]


def test_pod_without_containers() -> None:
    assert validation.schema_causes(POD, {"metadata": {"name": "p"}, "spec": {}}) == [
        Cause("spec.containers", "Required value", "FieldValueRequired")
    ]


# --- unknown fields ---------------------------------------------------------------------


def test_unknown_fields_in_document_order_with_list_indexes() -> None:
    obj = deployment()
    obj["metadata"]["lables"] = {"a": "b"}
    obj["spec"]["foo"] = 1
    obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostport"] = 1
    assert validation.unknown_fields(DEPLOYMENT, obj) == [
        "metadata.lables",
        "spec.template.spec.containers[0].ports[0].hostport",
        "spec.template.spec.containers[0].imagee",
        "spec.foo",
    ]


def test_maps_and_schemaless_objects_accept_anything() -> None:
    obj = deployment()
    obj["metadata"]["annotations"]["anything.example.com/x"] = "y"
    obj["metadata"]["managedFields"] = [
        {"manager": "kubectl", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    ]
    assert validation.unknown_fields(DEPLOYMENT, obj) == []


def test_strict_error_and_warning_use_upstream_wording() -> None:
    err = validation.strict_error(DEPLOYMENT, ["spec.foo", "spec.bar"])
    assert err.code == 400
    assert (
        err.message
        == PREFIX + 'strict decoding error: unknown field "spec.foo", unknown field "spec.bar"'
    )
    assert validation.unknown_field_warning("spec.foo") == 'unknown field "spec.foo"'


# --- custom resources -------------------------------------------------------------------

WIDGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "color": {"type": "string", "enum": ["red", "blue"]},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "items": {
                    "type": "array",
                    "maxItems": 2,
                    "items": {"type": "object", "properties": {"a": {"type": "string"}}},
                },
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}
WIDGET = Kind("example.com", "v1", "Widget", "widgets", True, custom_schema=WIDGET_SCHEMA)


def widget(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": spec,
    }


def test_valid_custom_resource() -> None:
    obj = widget(
        {"size": 3, "port": "http", "note": None, "extra": {"x": {"y": 1}}, "tags": {"a": "b"}}
    )
    validation.decode_check(WIDGET, obj)
    assert validation.schema_causes(WIDGET, obj) == []
    assert validation.unknown_fields(WIDGET, obj) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"size": "3"},
            Cause(
                "spec.size",
                'Invalid value: "string": spec.size in body must be of type integer: "string"',
                "FieldValueTypeInvalid",
            ),
        ),
        ({}, Cause("spec.size", "Required value", "FieldValueRequired")),
        (
            {"size": 0},
            Cause(
                "spec.size",
                "Invalid value: 0: spec.size in body should be greater than or equal to 1",
            ),
        ),
        (
            {"size": 1, "color": "green"},
            Cause(
                "spec.color",
                'Unsupported value: "green": supported values: "red", "blue"',
                "FieldValueNotSupported",
            ),
        ),
        (
            {"size": 1, "name": "ABC"},
            Cause("spec.name", "Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'"),
        ),
        (
            {"size": 1, "name": "abcdefg"},
            Cause("spec.name", "Too long: may not be more than 5 bytes", "FieldValueTooLong"),
        ),
        (
            {"size": 1, "items": [{}, {}, {}]},
            Cause("spec.items", "Too many: 3: must have at most 2 items", "FieldValueTooMany"),
        ),
        (
            {"size": 1, "tags": {"a": 1}},
            Cause(
                "spec.tags.a",
                'Invalid value: "integer": spec.tags.a in body must be of type string: "integer"',
                "FieldValueTypeInvalid",
            ),
        ),
        (
            {"size": 1, "items": [{"a": 5}]},
            Cause(
                "spec.items[0].a",
                'Invalid value: "integer": spec.items[0].a in body must be of type string: "integer"',
                "FieldValueTypeInvalid",
            ),
        ),
    ],
)
def test_custom_resource_causes(spec: dict[str, Any], expected: Cause) -> None:
    assert validation.schema_causes(WIDGET, widget(spec)) == [expected]


def test_custom_resource_unknown_fields_follow_pruning() -> None:
    obj = widget(
        {
            "size": 1,
            "bogus": 1,
            "extra": {"x": 1},
            "items": [{"a": "x", "b": 2}],
            "tags": {"k": "v"},
        }
    )
    obj["metadata"]["foo"] = 1
    obj["other"] = 1
    assert validation.unknown_fields(WIDGET, obj) == [
        "metadata.foo",
        "spec.bogus",
        "spec.items[0].b",
        "other",
    ]


def test_nullable_fields_accept_null() -> None:
    schema = {
        "type": "object",
        "properties": {"mode": {"type": "string", "enum": ["a"], "nullable": True}},
    }
    kind = Kind("example.com", "v1", "Thing", "things", True, custom_schema=schema)
    assert validation.schema_causes(kind, {"mode": None}) == []
    assert validation.schema_causes(kind, {"mode": "b"})[0].reason == "FieldValueNotSupported"


def test_a_schema_python_cannot_compile_is_not_enforced() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<"}}}
    kind = Kind("example.com", "v1", "Odd", "odds", True, custom_schema=schema)
    assert validation.schema_causes(kind, {"a": 1}) == []


def test_the_first_wrong_value_in_the_document_is_reported_as_go_does() -> None:
    obj = deployment()
    obj["metadata"]["labels"]["n"] = 1  # metadata comes before spec in the document
    obj["spec"]["replicas"] = "3"
    assert "ObjectMeta.metadata.labels" in decode_error(DEPLOYMENT, obj)
    obj = {"spec": {"paused": "no", "replicas": "3"}, "metadata": {"labels": {"n": 1}}}
    assert "DeploymentSpec.spec.paused of type bool" in decode_error(DEPLOYMENT, obj)
