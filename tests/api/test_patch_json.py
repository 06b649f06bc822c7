"""JSON patch (RFC 6902) and JSON merge patch (RFC 7386) as the API server applies them.

Aspects: each operation's success and failure, pointer escaping and `-` append, upstream's
quirks (negative indices, replace of a missing key, test against null), the Status errors
(400 for undecodable patches, 422 with upstream's fixed message for ones that do not
apply, 413 past the operation cap), merge patch null handling, and that inputs are never
mutated.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nanokube.api import patch
from nanokube.api.errors import BadRequest, Invalid
from nanokube.api.patch import (
    RequestEntityTooLarge,
    decode_pointer_token,
    escape_pointer_token,
    json_equal,
    json_merge_patch,
    json_patch,
)

POD: dict[str, Any] = {
    "metadata": {"name": "web", "labels": {"app": "web", "a/b": "x", "c~d": "y"}},
    "spec": {"containers": [{"name": "a", "image": "i1"}, {"name": "b", "image": "i2"}]},
}


def apply(ops: list[dict[str, Any]], doc: Any = None) -> Any:
    doc = POD if doc is None else doc
    before = copy.deepcopy(doc)
    ops_before = copy.deepcopy(ops)
    result = json_patch(doc, ops)
    assert doc == before and ops == ops_before, "inputs must not be mutated"
    return result


def rejected(ops: list[dict[str, Any]], doc: Any = None) -> Invalid:
    with pytest.raises(Invalid) as info:
        apply(ops, doc)
    assert info.value.code == 422
    assert info.value.message == "the server rejected our request due to an error in our request"
    return info.value


def test_public_api_is_curated() -> None:
    assert set(patch.__all__) == {
        "MAX_JSON_PATCH_COPY_BYTES",
        "MAX_JSON_PATCH_OPERATIONS",
        "RequestEntityTooLarge",
        "copy_json",
        "decode_pointer_token",
        "escape_pointer_token",
        "json_equal",
        "json_merge_patch",
        "json_patch",
        "strategic_merge_patch",
    }


# --- add ----------------------------------------------------------------------------------


def test_add_sets_object_member_and_overwrites() -> None:
    out = apply([{"op": "add", "path": "/metadata/labels/tier", "value": "fe"}])
    assert out["metadata"]["labels"]["tier"] == "fe"
    out = apply([{"op": "add", "path": "/metadata/labels/app", "value": "db"}])
    assert out["metadata"]["labels"]["app"] == "db"


def test_add_inserts_into_array_and_dash_appends() -> None:
    out = apply(
        [
            {"op": "add", "path": "/spec/containers/0", "value": {"name": "first"}},
            {"op": "add", "path": "/spec/containers/-", "value": {"name": "last"}},
            {"op": "add", "path": "/spec/containers/4", "value": {"name": "end"}},
        ]
    )
    assert [c["name"] for c in out["spec"]["containers"]] == ["first", "a", "b", "last", "end"]


def test_add_negative_index_counts_from_the_end() -> None:
    out = apply([{"op": "add", "path": "/spec/containers/-1", "value": {"name": "z"}}])
    assert [c["name"] for c in out["spec"]["containers"]] == ["a", "b", "z"]


def test_add_value_is_copied_not_shared() -> None:
    value = {"name": "c", "env": [{"name": "X"}]}
    out = json_patch(POD, [{"op": "add", "path": "/spec/containers/-", "value": value}])
    out["spec"]["containers"][-1]["env"].append({"name": "Y"})
    assert value == {"name": "c", "env": [{"name": "X"}]}


def test_add_without_value_adds_null() -> None:
    assert apply([{"op": "add", "path": "/metadata/x"}])["metadata"]["x"] is None


@pytest.mark.parametrize(
    "path",
    [
        "/missing/child",  # parent does not exist
        "/spec/containers/9",  # past the end
        "/spec/containers/x",  # not an index
        "/metadata/name/x",  # parent is a string
        "",  # upstream cannot add at the root
    ],
)
def test_add_failures_are_422(path: str) -> None:
    rejected([{"op": "add", "path": path, "value": 1}])


# --- pointers -----------------------------------------------------------------------------


def test_pointer_escapes() -> None:
    assert decode_pointer_token("a~1b") == "a/b"
    assert decode_pointer_token("c~0d") == "c~d"
    assert decode_pointer_token("~01") == "~1"  # one pass: ~0 then a literal 1
    assert escape_pointer_token("a/b~c") == "a~1b~0c"
    out = apply(
        [
            {"op": "replace", "path": "/metadata/labels/a~1b", "value": "X"},
            {"op": "remove", "path": "/metadata/labels/c~0d"},
        ]
    )
    assert out["metadata"]["labels"] == {"app": "web", "a/b": "X"}


# --- remove / replace ---------------------------------------------------------------------


def test_remove_member_and_element() -> None:
    out = apply(
        [
            {"op": "remove", "path": "/metadata/labels/app"},
            {"op": "remove", "path": "/spec/containers/0"},
        ]
    )
    assert "app" not in out["metadata"]["labels"]
    assert out["spec"]["containers"] == [{"name": "b", "image": "i2"}]


def test_remove_negative_index() -> None:
    out = apply([{"op": "remove", "path": "/spec/containers/-1"}])
    assert [c["name"] for c in out["spec"]["containers"]] == ["a"]


@pytest.mark.parametrize("path", ["/metadata/nope", "/spec/containers/2", "/spec/containers/-3"])
def test_remove_missing_is_422(path: str) -> None:
    rejected([{"op": "remove", "path": path}])


def test_replace_member_element_and_root() -> None:
    out = apply(
        [
            {"op": "replace", "path": "/spec/containers/1/image", "value": "i3"},
            {"op": "replace", "path": "/metadata/name", "value": "api"},
        ]
    )
    assert out["spec"]["containers"][1]["image"] == "i3"
    assert out["metadata"]["name"] == "api"
    assert apply([{"op": "replace", "path": "", "value": {"a": 1}}]) == {"a": 1}


def test_replace_missing_member_adds_it_like_upstream() -> None:
    assert (
        apply([{"op": "replace", "path": "/metadata/uid", "value": "u"}])["metadata"]["uid"] == "u"
    )


def test_replace_failures() -> None:
    rejected([{"op": "replace", "path": "/spec/containers/5", "value": {}}])
    rejected([{"op": "replace", "path": "", "value": "scalar"}])


# --- move / copy --------------------------------------------------------------------------


def test_move_and_copy() -> None:
    out = apply(
        [
            {"op": "copy", "from": "/metadata/labels", "path": "/metadata/annotations"},
            {"op": "move", "from": "/spec/containers/0", "path": "/spec/containers/-"},
        ]
    )
    assert out["metadata"]["annotations"] == out["metadata"]["labels"]
    assert out["metadata"]["annotations"] is not out["metadata"]["labels"]
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "a"]


def test_copy_of_missing_member_copies_null_like_upstream() -> None:
    assert (
        apply([{"op": "copy", "from": "/metadata/x", "path": "/metadata/y"}])["metadata"]["y"]
        is None
    )


def test_copies_are_capped_at_3_mib_in_total() -> None:
    doc = {"big": "x" * (1024 * 1024), "a": {}}
    ops = [{"op": "copy", "from": "/big", "path": f"/a/{i}"} for i in range(2)]
    assert len(apply(ops, doc)["a"]) == 2
    err = rejected(ops * 2, doc)
    assert "exceeding the limit 3145728" in str(err.__cause__)


def test_move_failures() -> None:
    rejected([{"op": "move", "from": "/metadata/x", "path": "/metadata/y"}])
    rejected([{"op": "move", "from": "/nope/x", "path": "/metadata/y"}])
    rejected([{"op": "move", "from": "/metadata/name", "path": "/nope/y"}])
    rejected([{"op": "move", "path": "/metadata/y"}])  # no from


# --- test ---------------------------------------------------------------------------------


def test_test_operation_passes_and_fails() -> None:
    ok: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/name", "value": "web"},
        {"op": "test", "path": "/spec/containers/0", "value": {"image": "i1", "name": "a"}},
        {"op": "test", "path": "", "value": POD},
    ]
    assert apply(ok) == POD
    rejected([{"op": "test", "path": "/metadata/name", "value": "api"}])
    rejected([{"op": "test", "path": "/spec/containers/7", "value": 1}])
    rejected([{"op": "test", "path": "/metadata/name"}])  # no value to compare


def test_test_treats_missing_and_null_alike() -> None:
    doc = {"a": None}
    assert apply([{"op": "test", "path": "/a", "value": None}], doc) == doc
    assert apply([{"op": "test", "path": "/b", "value": None}], doc) == doc
    assert apply([{"op": "test", "path": "/b"}], doc) == doc
    rejected([{"op": "test", "path": "/b", "value": 0}], doc)


def test_test_compares_json_types_strictly() -> None:
    doc = {"n": 1, "b": True}
    rejected([{"op": "test", "path": "/n", "value": 1.0}], doc)
    rejected([{"op": "test", "path": "/b", "value": 1}], doc)
    assert json_equal({"a": [1, "x"]}, {"a": [1, "x"]})
    assert not json_equal([1], [1, 2])


def test_a_failed_operation_discards_earlier_ones() -> None:
    rejected(
        [
            {"op": "add", "path": "/metadata/labels/x", "value": "1"},
            {"op": "test", "path": "/metadata/name", "value": "nope"},
        ]
    )


def test_the_422_keeps_the_detail_as_its_cause() -> None:
    err = rejected([{"op": "remove", "path": "/metadata/nope"}])
    assert "Unable to remove nonexistent key: nope" in str(err.__cause__)


# --- malformed patches --------------------------------------------------------------------


def test_unknown_operation_is_422() -> None:
    rejected([{"op": "frobnicate", "path": "/a"}])
    rejected([{"path": "/a"}])


def test_missing_path_is_422() -> None:
    rejected([{"op": "add", "value": 1}])
    rejected([{"op": "remove", "path": 5}])


def test_undecodable_patch_is_400() -> None:
    with pytest.raises(
        BadRequest, match="cannot unmarshal object into Go value of type jsonpatch.Patch"
    ):
        json_patch(POD, {"op": "add"})
    with pytest.raises(
        BadRequest, match="cannot unmarshal string into Go value of type jsonpatch.Operation"
    ):
        json_patch(POD, ["add"])


def test_null_patch_is_a_no_op() -> None:
    assert json_patch(POD, None) == POD


def test_too_many_operations_is_413() -> None:
    ops = [{"op": "test", "path": "/metadata/name", "value": "web"}] * 10001
    with pytest.raises(RequestEntityTooLarge) as info:
        json_patch(POD, ops)
    assert info.value.code == 413
    assert (
        info.value.message == "The allowed maximum operations in a JSON patch is 10000, got 10001"
    )


# --- JSON merge patch ---------------------------------------------------------------------


def merge(original: Any, patch_: Any) -> Any:
    before, patch_before = copy.deepcopy(original), copy.deepcopy(patch_)
    result = json_merge_patch(original, patch_)
    assert original == before and patch_ == patch_before, "inputs must not be mutated"
    return result


@pytest.mark.parametrize(
    ("original", "patch_", "expected"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
        ({"a": None}, {"a": {"b": None, "c": 1}}, {"a": {"c": 1}}),
        ({"a": {"b": 1}}, {"a": [{"x": None}]}, {"a": [{"x": None}]}),
        ({"a": 1}, {"a": [{"x": None}, None]}, {"a": [{}, None]}),
    ],
)
def test_merge_patch(original: Any, patch_: Any, expected: Any) -> None:
    assert merge(original, patch_) == expected


def test_merge_patch_result_shares_nothing() -> None:
    original = {"spec": {"a": {"b": 1}}}
    patch_ = {"spec": {"c": {"d": 2}}}
    out = merge(original, patch_)
    out["spec"]["a"]["b"] = 9
    out["spec"]["c"]["d"] = 9
    assert original == {"spec": {"a": {"b": 1}}} and patch_ == {"spec": {"c": {"d": 2}}}


def test_merge_patch_array_replaces_the_document() -> None:
    assert merge({"a": 1}, [{"b": None}, 2]) == [{}, 2]


@pytest.mark.parametrize("bad", [None, 5, "x", True])
def test_merge_patch_that_is_not_an_object_is_400(bad: Any) -> None:
    with pytest.raises(BadRequest, match="Invalid JSON Patch"):
        json_merge_patch({"a": 1}, bad)
