"""Strategic merge patch, applied as the Kubernetes API server applies it.

A reimplementation of upstream's server-side `StrategicMergeMapPatch`
(`k8s.io/apimachinery/pkg/util/strategicpatch/patch.go`, merge options
`MergeParallelList` and `IgnoreUnmatchedNulls`), driven by the Kubernetes JSON schemas
instead of Go struct tags. It is a JSON merge patch with these additions:

- a list whose field says `x-kubernetes-patch-strategy: merge` is merged: items that are
  maps are matched on `x-kubernetes-patch-merge-key` and merged recursively, primitives
  are unioned; any other list is replaced;
- `$patch: replace` / `delete` in a map replaces it / empties it; in a merged list an item
  `{"$patch": "delete", KEY: V}` deletes the items whose merge key is V, and
  `{"$patch": "replace"}` makes the rest of the patch list the whole list (`$patch: merge`
  is refused, as upstream does);
- `$setElementOrder/FIELD` orders the merged list (kubectl's client-side apply sends it);
- `$deleteFromPrimitiveList/FIELD` removes primitives from a merged list;
- `$retainKeys` drops the keys of the original map that it does not list.

Schema metadata is looked up once per (schema node, field) and cached, so a patch walks
the schema alongside the object at dictionary-lookup cost. Errors follow upstream's
mapping (`interpretStrategicMergePatchError`): malformed directives are 400 BadRequest,
lists of lists a 422 Invalid, and anything else a 500 carrying upstream's message. The
inputs are never mutated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nanokube.api import schema
from nanokube.api.errors import BadRequest, Invalid, StatusError
from nanokube.api.patch_json import REJECTED_MESSAGE, copy_json, json_merge_patch

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"


# --- schema metadata ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Meta:
    """What the schema says about one field: its strategy and the schema of its values."""

    strategy: str  # "merge", "replace" or "" (retainKeys only matters when creating patches)
    merge_key: str
    node: _Node | None  # the field's value, when it is a map
    item: _Node | None  # the field's items, when it is a list
    error: str = ""  # an impossible strategy combination, reported when used


_NO_META = _Meta("", "", None, None)
_NODES: dict[int, _Node] = {}


class _Node:
    """One resolved schema; its fields' `_Meta` computed on first use, then cached."""

    __slots__ = ("_fields", "_schema")

    def __init__(self, resolved: dict[str, Any]) -> None:
        self._schema = resolved
        self._fields: dict[str, _Meta] = {}

    def field(self, key: str) -> _Meta:
        meta = self._fields.get(key)
        if meta is None:
            meta = self._fields[key] = self._compute(key)
        return meta

    def _compute(self, key: str) -> _Meta:
        prop = (self._schema.get("properties") or {}).get(key)
        if prop is None:
            extra = self._schema.get("additionalProperties")
            if not isinstance(extra, dict):
                return _NO_META
            # Map values carry no patch metadata upstream (Go map types have no struct tags).
            value = schema.resolve(extra)
            return _Meta("", "", _node(value), _node(schema.resolve((value or {}).get("items"))))
        value = schema.resolve(prop)
        # Without `items`, the items are of the field's own type, as for a Go pointer field.
        items = schema.resolve((value or {}).get("items")) if "items" in (value or {}) else value
        strategy, error = _strategy(prop.get("x-kubernetes-patch-strategy", ""))
        merge_key = prop.get("x-kubernetes-patch-merge-key", "")
        return _Meta(strategy, merge_key, _node(value), _node(items), error)


def _node(resolved: dict[str, Any] | None) -> _Node | None:
    if resolved is None:
        return None
    node = _NODES.get(id(resolved))
    if node is None:
        node = _NODES[id(resolved)] = _Node(resolved)
    return node


def _strategy(declared: str) -> tuple[str, str]:
    """Upstream's extractRetainKeysPatchStrategy: at most one strategy besides retainKeys."""
    parts = declared.split(",") if declared else []
    others = [p for p in parts if p != "retainKeys"]
    if len(parts) > 2 or (len(parts) == 2 and len(others) != 1):
        return "", f"unexpected patch strategy: [{' '.join(parts)}]"
    return (others[0] if others else ""), ""


def _field(node: _Node | None, key: str) -> _Meta:
    meta = node.field(key) if node is not None else _NO_META
    if meta.error:
        raise StatusError(meta.error)
    return meta


def root_node(schema_name: str) -> _Node:
    """The cached metadata walker of one definition (e.g. `io.k8s.api.apps.v1.Deployment`)."""
    definition = schema.definitions().get(schema_name)
    node = _node(schema.resolve(definition)) if definition is not None else None
    if node is None:
        raise ValueError(f"no schema definition named {schema_name!r}")
    return node


# --- errors in upstream's words -----------------------------------------------------------


def go_format(value: Any) -> str:
    """A JSON value as Go's `%v` prints it, for error messages that quote patches."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_format(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_format(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def _go_type(value: Any) -> str:
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    if value is None:
        return "<nil>"
    return {bool: "bool", int: "int64", float: "float64", str: "string"}.get(type(value), "?")


def _bad_arg_type(expected: str, actual: Any) -> StatusError:
    return StatusError(f"expected a {expected}, but received a {_go_type(actual)}")


def _no_merge_key(item: dict[str, Any], merge_key: str) -> StatusError:
    return StatusError(f"map: {go_format(item)} does not contain declared merge key: {merge_key}")


def _bad_patch_type(directive: Any, patch: dict[str, Any]) -> StatusError:
    return StatusError(f"unknown patch type: {go_format(directive)} in map: {go_format(patch)}")


# --- the merge ----------------------------------------------------------------------------


def strategic_merge_patch(
    original: dict[str, Any], patch: dict[str, Any], schema_name: str | None
) -> dict[str, Any]:
    """Apply a strategic merge patch to `original`; returns a new object.

    `schema_name` is the schema definition of the object's kind; None (a custom resource
    without schema hints) applies the patch as a JSON merge patch.
    """
    if not isinstance(patch, dict):
        raise BadRequest(
            f"json: cannot unmarshal {_json_word(patch)} into Go value of type "
            "map[string]interface {}"
        )
    if schema_name is None:
        result = json_merge_patch(original, patch)
        assert isinstance(result, dict)
        return result
    node = root_node(schema_name)
    return _merge_map(copy_json(original) if isinstance(original, dict) else {}, patch, node)


def _json_word(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"


_DROP = object()


def _clean(value: Any) -> Any:
    """A copy of a patch value with nulls and directives removed, as upstream stores it.

    Upstream drops maps holding `$patch` (removeDirectives) and null members; the other
    directive keys vanish when it decodes the result into a typed object.
    """
    if isinstance(value, dict):
        if DIRECTIVE in value:
            return _DROP
        out = {}
        for k, v in value.items():
            if v is None or _is_directive_key(k):
                continue
            c = _clean(v)
            if c is not _DROP:
                out[k] = c
        return out
    if isinstance(value, list):
        return [c for c in map(_clean, value) if c is not _DROP]
    return value


def _is_directive_key(key: str) -> bool:
    return key == RETAIN_KEYS or key.startswith(
        (SET_ELEMENT_ORDER + "/", DELETE_FROM_PRIMITIVE_LIST + "/")
    )


def _put(original: dict[str, Any], key: str, value: Any) -> None:
    cleaned = _clean(value)
    if cleaned is _DROP:
        original.pop(key, None)
    else:
        original[key] = cleaned


def _kind(value: Any) -> type:
    return dict if isinstance(value, dict) else list if isinstance(value, list) else object


def _merge_map(
    original: dict[str, Any], patch: dict[str, Any], node: _Node | None
) -> dict[str, Any]:
    """Merge `patch` into `original` (which this call owns and may change)."""
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == "replace":
            replaced = _clean({k: v for k, v in patch.items() if k != DIRECTIVE})
            return replaced if isinstance(replaced, dict) else {}
        if directive == "delete":
            return {}
        raise _bad_patch_type(directive, patch)
    if RETAIN_KEYS in patch:
        _retain_keys(original, patch)
    done = _set_element_orders(original, patch, node)
    for key, value in patch.items():
        if key in done or key == RETAIN_KEYS:
            continue
        delete_list = key.startswith(DELETE_FROM_PRIMITIVE_LIST)
        if delete_list:
            key = _extract_key(key, DELETE_FROM_PRIMITIVE_LIST)
        if value is None:
            original.pop(key, None)
            continue
        if key not in original or _kind(original[key]) is not _kind(value):
            if not delete_list:
                _put(original, key, value)
            continue
        current = original[key]
        if isinstance(current, dict):
            meta = _field(node, key)
            if meta.strategy == "replace":
                _put(original, key, value)
            else:
                original[key] = _merge_map(current, value, meta.node)
        elif isinstance(current, list):
            original[key] = _merge_list_field(current, value, _field(node, key), delete_list)[0]
        else:
            _put(original, key, value)
    return original


def _extract_key(key: str, prefix: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        if prefix == DELETE_FROM_PRIMITIVE_LIST:
            raise BadRequest("invalid patch format of primitive list")
        raise BadRequest("invalid patch format of setElementOrder list")
    return rest


def _retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    keep = patch[RETAIN_KEYS]
    if not isinstance(keep, list):
        raise BadRequest("invalid patch format of retainKeys")
    wanted = {k for k in keep if isinstance(k, str)}
    for key, value in patch.items():
        if (
            value is None
            or key == RETAIN_KEYS
            or key.startswith((DELETE_FROM_PRIMITIVE_LIST, SET_ELEMENT_ORDER))
        ):
            continue
        if key not in wanted:
            raise BadRequest("invalid patch format of retainKeys")
    for key in [k for k in original if k not in wanted]:
        del original[key]


def _merge_list_field(
    original: list[Any], patch: list[Any], meta: _Meta, delete_list: bool
) -> tuple[list[Any], list[Any]]:
    """The merged list, and the original as upstream's Go slice sees it afterwards."""
    if meta.strategy == "merge" or delete_list:
        return _merge_list(original, patch, meta, delete_list)
    cleaned = _clean(patch)
    assert isinstance(cleaned, list)
    return cleaned, original


def _element_type(*lists: list[Any]) -> type:
    """upstream sliceElementType: every item of the lists has one type, and is not a list."""
    found: type | None = None
    for items in lists:
        for item in items:
            current = type(item)
            if found is None:
                if current is list:
                    raise Invalid(REJECTED_MESSAGE)  # "lists of lists are not supported"
                found = current
            elif current is not found:
                shown = "[" + " ".join(go_format(x) for x in lists) + "]"
                raise StatusError(f"list element types are not identical: {shown}")
    if found is None:
        raise StatusError("no elements in any of the given slices")
    return found


def _same(a: Any, b: Any) -> bool:
    """Go's `==` on decoded JSON scalars: equal type and value."""
    return type(a) is type(b) and a == b


def _merge_list(
    original: list[Any], patch: list[Any], meta: _Meta, delete_list: bool
) -> tuple[list[Any], list[Any]]:
    """Merge two lists; also returns `original` as upstream's Go slice sees it afterwards.

    Upstream deletes and appends in place, so the caller's view of the original list (the
    server order that `$setElementOrder` then follows) ends up with items shifted left by
    deletions and appended items written over its tail while the backing array has room
    (its capacity equals its length, as the apiserver's unstructured converter makes it).
    The view is reproduced because it decides where server-only items land.
    """
    if not original and not patch:
        return original, original
    element = _element_type(original, patch)
    merge_key = meta.merge_key
    if element is not dict:
        if delete_list:
            return [x for x in original if not any(_same(x, d) for d in patch)], original
        merged: list[Any] = []
        for item in original + [copy_json(p) for p in patch]:
            if not any(_same(item, m) for m in merged):
                merged.append(item)
        ours, theirs = _partition(merged, patch, "")
        return _order(ours, theirs, patch, original, ""), original
    if not merge_key:
        raise StatusError("cannot merge lists without merge key for struct")
    view = list(original)
    original, patch, kept = _apply_list_directives(view, patch, merge_key)
    merged = _merge_items(list(original), patch, merge_key, meta.item)
    for n, item in enumerate(merged[len(original) :], start=kept):
        if n >= len(view):
            break
        view[n] = item
    ours, theirs = _partition(merged, patch, merge_key)
    return _order(ours, theirs, patch, original, merge_key), view


def _apply_list_directives(
    view: list[Any], patch: list[Any], merge_key: str
) -> tuple[list[Any], list[Any], int]:
    """Handle `$patch` items: returns the new original, the patch items without them, and
    how many items of `view` remain in use (deletions shift `view` left, in place)."""
    plain = []
    replace = False
    used = len(view)
    for item in patch:
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            while (i := _find_by_key(view[:used], merge_key, item[merge_key])) >= 0:
                view[i : used - 1] = view[i + 1 : used]
                used -= 1
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise StatusError("merging lists cannot yet be specified in the patch")
        else:
            raise _bad_patch_type(directive, item)
    if replace:
        # The patch items become a new list: later appends no longer reach `view`.
        return [c for c in map(_clean, plain) if c is not _DROP], [], len(view)
    return view[:used], plain, used


def _find_by_key(items: list[Any], merge_key: str, value: Any) -> int:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise StatusError(f"value for key {i} is not a map")
        if merge_key in item and _same(item[merge_key], value):
            return i
    return -1


def _merge_items(
    merged: list[Any], patch: list[Any], merge_key: str, node: _Node | None
) -> list[Any]:
    for item in patch:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        i = _find_by_key(merged, merge_key, item[merge_key])
        if i >= 0:
            merged[i] = _merge_map(merged[i], item, node)
        else:
            cleaned = _clean(item)
            if cleaned is not _DROP:
                merged.append(cleaned)
    return merged


def _partition(merged: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    """Split into the items present in `by` (the patch's) and the others (server-only)."""
    ours: list[Any] = []
    theirs: list[Any] = []
    for item in merged:
        if merge_key:
            if not isinstance(item, dict):
                raise _bad_arg_type("map[string]interface {}", item)
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            found = _find_by_key(by, merge_key, item[merge_key]) >= 0
        else:
            found = any(_same(item, b) for b in by)
        (ours if found else theirs).append(item)
    return ours, theirs


def _position(order: list[Any], item: Any, merge_key: str) -> int:
    """upstream index(): where `item` (matched on its merge key) sits in `order`, or -1."""
    if merge_key:
        wanted = item.get(merge_key) if isinstance(item, dict) else None
        for i, o in enumerate(order):
            if _same(o.get(merge_key) if isinstance(o, dict) else None, wanted):
                return i
        return -1
    for i, o in enumerate(order):
        if _same(o, item):
            return i
    return -1


def _sorted_by(items: list[Any], order: list[Any], merge_key: str) -> list[Any]:
    deleted = []
    if merge_key:
        for item in items + order:
            if not isinstance(item, dict):
                raise _bad_arg_type("map[string]interface {}", item)
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
        deleted = [i for i in items if i.get(DIRECTIVE) == "delete"]
        items = [i for i in items if i.get(DIRECTIVE) != "delete"]
    positions = [_position(order, item, merge_key) for item in items]
    ranked = sorted(range(len(items)), key=lambda n: (positions[n] < 0, positions[n]))
    return [items[n] for n in ranked] + deleted


def _order(
    ours: list[Any], theirs: list[Any], patch_order: list[Any], server_order: list[Any], key: str
) -> list[Any]:
    """upstream normalizeElementOrder: patch items in patch order, server-only items in
    server order, interleaved where the server order relates two of them."""
    ours = _sorted_by(ours, patch_order, key)
    theirs = _sorted_by(theirs, server_order, key)
    out: list[Any] = []
    i = j = 0
    while i < len(theirs) or j < len(ours):
        if i >= len(theirs):
            out.append(ours[j])
            j += 1
        elif j >= len(ours):
            out.append(theirs[i])
            i += 1
        else:
            left = _position(server_order, theirs[i], key)
            right = _position(server_order, ours[j], key)
            if left >= 0 and right >= 0 and left < right:
                out.append(theirs[i])
                i += 1
            else:
                out.append(ours[j])
                j += 1
    return out


def _set_element_orders(
    original: dict[str, Any], patch: dict[str, Any], node: _Node | None
) -> set[str]:
    """Apply every `$setElementOrder/FIELD` with its list; returns the patch keys handled."""
    done: set[str] = set()
    for key, order in patch.items():
        if not key.startswith(SET_ELEMENT_ORDER):
            continue
        done.add(key)
        if not isinstance(order, list):
            raise _bad_arg_type("[]interface {}", order)
        field = _extract_key(key, SET_ELEMENT_ORDER)
        current = original.get(field, _DROP)
        wanted = patch.get(field, _DROP)
        if current is not _DROP and not isinstance(current, list):
            raise _bad_arg_type("[]interface {}", current)
        if wanted is not _DROP and not isinstance(wanted, list):
            raise _bad_arg_type("[]interface {}", wanted)
        current_list: list[Any] = current if isinstance(current, list) else []
        wanted_list: list[Any] = wanted if isinstance(wanted, list) else []
        meta = _field(node, field)
        _check_order(wanted_list, order, meta.merge_key)
        if current is not _DROP and wanted is _DROP:
            merged = current_list
        elif current is _DROP and wanted is not _DROP:
            merged = [c for c in map(_clean, wanted_list) if c is not _DROP]
        elif current is not _DROP:
            merged, current_list = _merge_list_field(current_list, wanted_list, meta, False)
        else:
            continue
        ours, theirs = _partition(merged, order, meta.merge_key)
        element = _element_type(current_list, wanted_list)
        key_for_order = meta.merge_key if element is dict else ""
        original[field] = _order(ours, theirs, order, current_list, key_for_order)
        done.add(field)
    return done


def _check_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    """upstream validatePatchWithSetOrderList: the patch list follows the order list."""
    if not order or not patch_list:
        return
    items = patch_list
    if merge_key:
        for item in patch_list:
            if not isinstance(item, dict):
                raise _bad_arg_type("map[string]interface {}", item)
        items = [i for i in patch_list if i.get(DIRECTIVE) != "delete"]
    p = o = 0
    while p < len(items) and o < len(order):
        if isinstance(items[p], dict) and DIRECTIVE in items[p]:
            p += 1
            continue
        if _order_item_equal(items[p], order[o], merge_key):
            p += 1
        o += 1
    if p < len(items) and o >= len(order):
        raise StatusError(
            f"The order in patch list:\n{go_format(patch_list)}\n doesn't match "
            f"{SET_ELEMENT_ORDER} list:\n{go_format(order)}\n"
        )


def _order_item_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _same(left, right)
    if not isinstance(left, dict):
        raise _bad_arg_type("map[string]interface {}", left)
    if not isinstance(right, dict):
        raise _bad_arg_type("map[string]interface {}", right)
    if merge_key not in left:
        raise _no_merge_key(left, merge_key)
    if merge_key not in right:
        raise _no_merge_key(right, merge_key)
    return _same(left[merge_key], right[merge_key])
