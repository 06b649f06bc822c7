"""Strategic merge patch against the real Kubernetes schemas.

Aspects: the patches kubectl sends (client-side apply with `$setElementOrder`, deletions,
`$retainKeys`, `set image`, `rollout restart`), list merging by merge key versus
replacement, primitive list union and `$deleteFromPrimitiveList`, `$patch` directives in
maps and lists, where merged items land (upstream's ordering rules), null handling,
schema-less (custom resource) patches, the Status errors in upstream's words, and that
inputs are never mutated.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nanokube.api.errors import BadRequest, Invalid, StatusError
from nanokube.api.patch import strategic_merge_patch

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
POD = "io.k8s.api.core.v1.Pod"


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "finalizers": ["a.io/x", "b.io/y"],
        },
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "nginx:1",
                            "args": ["-a", "-b"],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        },
                        {"name": "side", "image": "busybox"},
                    ],
                    "tolerations": [{"key": "k1", "operator": "Exists"}],
                },
            },
        },
    }


def smp(original: dict[str, Any], patch: dict[str, Any], name: str | None = DEPLOYMENT) -> Any:
    before, patch_before = copy.deepcopy(original), copy.deepcopy(patch)
    result = strategic_merge_patch(original, patch, name)
    assert original == before and patch == patch_before, "inputs must not be mutated"
    return result


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"]


def template_patch(spec: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": spec}}}


# --- what kubectl sends -------------------------------------------------------------------


def test_client_side_apply_changes_an_image() -> None:
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{2}"}},
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "app"}, {"name": "side"}],
                    "containers": [{"image": "nginx:2", "name": "app"}],
                }
            }
        },
    }
    out = smp(deployment(), patch)
    assert [c["name"] for c in containers(out)] == ["app", "side"]
    app = containers(out)[0]
    assert app["image"] == "nginx:2"
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    annotations = out["metadata"]["annotations"]
    assert annotations == {"kubectl.kubernetes.io/last-applied-configuration": "{2}"}
    assert "$setElementOrder/containers" not in out["spec"]["template"]["spec"]


def test_client_side_apply_adds_and_reorders_containers() -> None:
    patch = template_patch(
        {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "new"}, {"name": "app"}],
            "containers": [{"name": "new", "image": "redis"}],
        }
    )
    out = smp(deployment(), patch)
    assert [c["name"] for c in containers(out)] == ["side", "new", "app"]
    assert containers(out)[1] == {"name": "new", "image": "redis"}


def test_client_side_apply_deletes_a_container() -> None:
    patch = template_patch(
        {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"$patch": "delete", "name": "side"}],
        }
    )
    assert [c["name"] for c in containers(smp(deployment(), patch))] == ["app"]


def test_client_side_apply_switches_strategy_with_retain_keys() -> None:
    patch = {
        "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}
    }
    assert smp(deployment(), patch)["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_drops_unlisted_original_keys() -> None:
    patch = {
        "spec": {"strategy": {"$retainKeys": ["rollingUpdate"], "rollingUpdate": {"maxSurge": 1}}}
    }
    assert smp(deployment(), patch)["spec"]["strategy"] == {"rollingUpdate": {"maxSurge": 1}}


def test_retain_keys_on_a_volume_switches_its_source() -> None:
    pod = {"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}}
    patch = {
        "spec": {
            "volumes": [
                {"name": "v", "$retainKeys": ["name", "secret"], "secret": {"secretName": "s"}}
            ]
        }
    }
    out = smp(pod, patch, POD)
    assert out["spec"]["volumes"] == [
        {"name": "v", "secret": {"secretName": "s"}},
        {"name": "w", "emptyDir": {}},
    ]


def test_set_image_and_rollout_restart_shapes() -> None:
    patch = {
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}
                },
                "spec": {"containers": [{"name": "side", "image": "busybox:2"}]},
            }
        }
    }
    out = smp(deployment(), patch)
    assert out["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"},
    }
    assert containers(out)[1] == {"name": "side", "image": "busybox:2"}
    assert containers(out)[0]["image"] == "nginx:1"


def test_pause_and_resume() -> None:
    paused = smp(deployment(), {"spec": {"paused": True}})
    assert paused["spec"]["paused"] is True
    assert "paused" not in smp(paused, {"spec": {"paused": None}})["spec"]


# --- merging and replacing lists ----------------------------------------------------------


def test_new_list_items_go_before_server_only_ones() -> None:
    patch = template_patch({"containers": [{"name": "new", "image": "redis"}]})
    assert [c["name"] for c in containers(smp(deployment(), patch))] == ["new", "app", "side"]


def test_merged_items_interleave_by_server_order() -> None:
    pod = {"spec": {"containers": [{"name": "c", "env": [{"name": n} for n in "ABC"]}]}}
    patch = {
        "spec": {"containers": [{"name": "c", "env": [{"name": "B", "value": "2"}, {"name": "D"}]}]}
    }
    env = smp(pod, patch, POD)["spec"]["containers"][0]["env"]
    assert env == [{"name": "A"}, {"name": "B", "value": "2"}, {"name": "D"}, {"name": "C"}]


def test_lists_without_merge_strategy_are_replaced() -> None:
    patch = template_patch(
        {
            "tolerations": [{"key": "k2", "operator": "Exists"}],
            "containers": [{"name": "app", "args": ["-c"]}],
        }
    )
    out = smp(deployment(), patch)
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "k2", "operator": "Exists"}]
    assert containers(out)[0]["args"] == ["-c"]


def test_merge_key_other_than_name() -> None:
    patch = template_patch(
        {"containers": [{"name": "app", "ports": [{"containerPort": 443, "protocol": "TCP"}]}]}
    )
    ports = containers(smp(deployment(), patch))[0]["ports"]
    assert ports == [
        {"containerPort": 443, "protocol": "TCP"},
        {"containerPort": 80, "protocol": "TCP"},
    ]


def test_primitive_list_with_merge_strategy_is_unioned() -> None:
    out = smp(deployment(), {"metadata": {"finalizers": ["b.io/y", "c.io/z"]}})
    assert out["metadata"]["finalizers"] == ["a.io/x", "b.io/y", "c.io/z"]


def test_delete_from_primitive_list() -> None:
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.io/x"]}}
    assert smp(deployment(), patch)["metadata"]["finalizers"] == ["b.io/y"]


def test_set_element_order_of_a_primitive_list() -> None:
    patch = {
        "metadata": {
            "$setElementOrder/finalizers": ["b.io/y", "a.io/x"],
            "$deleteFromPrimitiveList/finalizers": [],
        }
    }
    assert smp(deployment(), patch)["metadata"]["finalizers"] == ["b.io/y", "a.io/x"]


def test_replace_strategy_replaces_a_map() -> None:
    pdb = {"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}}
    patch = {"spec": {"selector": {"matchLabels": {"b": "2"}}}}
    out = smp(pdb, patch, "io.k8s.api.policy.v1.PodDisruptionBudget")
    assert out["spec"] == {"selector": {"matchLabels": {"b": "2"}}, "minAvailable": 1}


def test_maps_of_strings_merge() -> None:
    patch = {"spec": {"template": {"metadata": {"labels": {"tier": "fe", "app": None}}}}}
    assert smp(deployment(), patch)["spec"]["template"]["metadata"]["labels"] == {"tier": "fe"}


# --- directives ---------------------------------------------------------------------------


def test_patch_replace_in_a_map() -> None:
    patch = {"spec": {"template": {"metadata": {"labels": {"$patch": "replace", "x": "y"}}}}}
    assert smp(deployment(), patch)["spec"]["template"]["metadata"]["labels"] == {"x": "y"}


def test_patch_delete_in_a_map_empties_it() -> None:
    assert smp(deployment(), {"spec": {"strategy": {"$patch": "delete"}}})["spec"]["strategy"] == {}


def test_patch_replace_in_a_list() -> None:
    patch = template_patch({"containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}]})
    assert containers(smp(deployment(), patch)) == [{"name": "only", "image": "x"}]


def test_directive_values_for_absent_fields_are_dropped() -> None:
    patch = {"spec": {"minReadySeconds": 5, "selector": {"$patch": "delete"}}}
    out = smp(deployment(), patch)
    assert out["spec"]["minReadySeconds"] == 5 and "selector" not in out["spec"]


def test_new_items_lose_nulls_and_directives() -> None:
    patch = template_patch(
        {
            "containers": [
                {
                    "name": "new",
                    "image": None,
                    "env": [{"name": "X", "value": None}, {"name": "Y", "$patch": "delete"}],
                }
            ]
        }
    )
    assert containers(smp(deployment(), patch))[0] == {"name": "new", "env": [{"name": "X"}]}


def test_null_deletes_a_key() -> None:
    out = smp(deployment(), {"spec": {"replicas": None, "nothing": None}})
    assert "replicas" not in out["spec"] and "nothing" not in out["spec"]


def test_type_change_replaces_the_value() -> None:
    out = smp(deployment(), {"spec": {"strategy": ["odd"]}})
    assert out["spec"]["strategy"] == ["odd"]


def test_unknown_fields_merge_like_a_merge_patch() -> None:
    original = {"spec": {"extra": {"a": 1, "l": [1, 2]}}}
    out = smp(original, {"spec": {"extra": {"b": 2, "l": [3]}}})
    assert out["spec"]["extra"] == {"a": 1, "b": 2, "l": [3]}


def test_empty_patch_returns_an_unshared_copy() -> None:
    original = deployment()
    out = smp(original, {})
    assert out == original
    containers(out)[0]["env"].clear()
    assert containers(original)[0]["env"]


# --- custom resources (no schema) ---------------------------------------------------------


def test_without_schema_it_is_a_merge_patch() -> None:
    original = {"spec": {"items": [{"name": "a", "v": 1}], "keep": 1}}
    patch = {"spec": {"items": [{"name": "a", "w": 2}], "keep": None}}
    assert smp(original, patch, None) == {"spec": {"items": [{"name": "a", "w": 2}]}}


def test_unknown_definition_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no schema definition"):
        strategic_merge_patch({}, {}, "io.example.Nope")


# --- errors -------------------------------------------------------------------------------


def test_patch_that_is_not_an_object_is_400() -> None:
    with pytest.raises(BadRequest, match="cannot unmarshal array into Go value"):
        strategic_merge_patch({}, [], DEPLOYMENT)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"metadata": {"$deleteFromPrimitiveList": ["x"]}},
            "invalid patch format of primitive list",
        ),
        (
            {"metadata": {"$setElementOrderX/finalizers": ["x"]}},
            "invalid patch format of setElementOrder list",
        ),
        ({"spec": {"strategy": {"$retainKeys": "type"}}}, "invalid patch format of retainKeys"),
        (
            {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
            "invalid patch format of retainKeys",
        ),
    ],
)
def test_malformed_directives_are_400(patch: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        smp(deployment(), patch)
    assert info.value.message == message and info.value.code == 400


def test_item_without_merge_key_is_an_error_in_upstream_words() -> None:
    with pytest.raises(StatusError) as info:
        smp(deployment(), template_patch({"containers": [{"image": "x"}]}))
    assert info.value.code == 500
    assert info.value.message == "map: map[image:x] does not contain declared merge key: name"


def test_patch_merge_directive_is_refused_as_upstream_does() -> None:
    with pytest.raises(
        StatusError, match="unknown patch type: merge in map: map\\[\\$patch:merge\\]"
    ):
        smp(deployment(), {"spec": {"strategy": {"$patch": "merge"}}})
    with pytest.raises(StatusError, match="merging lists cannot yet be specified in the patch"):
        smp(deployment(), template_patch({"containers": [{"$patch": "merge"}]}))


def test_order_list_must_cover_the_patch_list() -> None:
    patch = template_patch(
        {"$setElementOrder/containers": [{"name": "app"}], "containers": [{"name": "zzz"}]}
    )
    with pytest.raises(StatusError, match="doesn't match \\$setElementOrder list"):
        smp(deployment(), patch)


def test_mixed_item_types_are_an_error() -> None:
    with pytest.raises(StatusError, match="list element types are not identical"):
        smp(deployment(), {"metadata": {"finalizers": [1]}})


def test_lists_of_lists_are_422() -> None:
    patch = template_patch(
        {"containers": [{"name": "side", "$setElementOrder/command": [["a"]], "command": [["a"]]}]}
    )
    with pytest.raises(Invalid) as info:
        smp(deployment(), patch)
    assert info.value.code == 422
