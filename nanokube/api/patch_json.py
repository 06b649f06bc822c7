"""JSON patch (RFC 6902) and JSON merge patch (RFC 7386), as the Kubernetes API server applies them.

Upstream applies both with `gopkg.in/evanphx/json-patch.v4`, and kubectl users meet that
library's exact semantics, so they are reproduced here rather than a textbook RFC reading:

- JSON patch: negative array indices count from the end; `replace` of a missing object key
  adds it, `copy` of a missing key copies `null`, `test` treats a missing key and a `null`
  alike, and `add` at the root pointer "" fails. A patch that cannot be decoded is a 400
  BadRequest; one that does not apply is a 422 Invalid whose message is upstream's fixed
  "the server rejected our request due to an error in our request" (the apiserver wraps the
  library's error with `NewGenericServerResponse`, which drops the detail; the detail is
  kept on the exception's `__cause__` and logged at debug level).
- Merge patch: `null` deletes a key, objects merge recursively, anything else replaces;
  `null`s inside newly added objects are dropped.

Inputs are never mutated: the original is deep-copied once and every value taken from a
patch is copied in, so the result shares nothing with either input.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

from nanokube.api.errors import BadRequest, Invalid, StatusError

log = logging.getLogger(__name__)

# Upstream caps a JSON patch at this many operations (`maxJSONPatchOperations`).
MAX_JSON_PATCH_OPERATIONS = 10000
# ...and the bytes its `copy` operations may add in total (`--json-patch-max-copy-bytes`).
MAX_JSON_PATCH_COPY_BYTES = 3 * 1024 * 1024

REJECTED_MESSAGE = "the server rejected our request due to an error in our request"

_INDEX = re.compile(r"[+-]?[0-9]+\Z")


class RequestEntityTooLarge(StatusError):
    """413: errors.py has no such class yet; upstream uses it for oversized JSON patches."""

    code = 413
    reason = "RequestEntityTooLarge"


class _PatchFailed(Exception):
    """A JSON patch operation that does not apply (upstream's library error text)."""


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (orjson round trip: several times faster than deepcopy)."""
    if not isinstance(value, (dict, list)):
        return value
    try:
        return orjson.loads(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        return _copy_slow(value)


def _copy_slow(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy_slow(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_slow(v) for v in value]
    return value


def go_json_type(value: Any) -> str:
    """The word Go's encoding/json uses for a JSON value in its unmarshal errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# --- JSON merge patch -------------------------------------------------------------------


def json_merge_patch(original: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch; returns a new document.

    A `null` or scalar patch is upstream's 400 "Invalid JSON Patch"; an array patch (or a
    non-object original) yields the patch itself, which the server then rejects as an object.
    """
    if patch is None or not isinstance(patch, (dict, list)):
        raise BadRequest("Invalid JSON Patch")
    if isinstance(patch, list) or not isinstance(original, dict):
        return _pruned(patch)
    result = copy_json(original)
    _merge_into(result, patch)
    return result


def _merge_into(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
            continue
        current = doc.get(key)
        if current is None:
            doc[key] = _pruned(value)
        elif not isinstance(current, dict):
            doc[key] = _pruned(value)
        elif isinstance(value, dict):
            _merge_into(current, value)
        else:
            # Upstream replaces an object by a non-object patch value without pruning it.
            doc[key] = copy_json(value)


def _pruned(value: Any) -> Any:
    """A copy of `value` without `null` object members (array elements are kept)."""
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


# --- JSON patch ---------------------------------------------------------------------------


def json_patch(original: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch (a decoded JSON array of operations); returns a new document.

    Raises BadRequest when `operations` is not an array of objects, RequestEntityTooLarge
    past 10000 operations, and Invalid (422) when an operation does not apply.
    """
    if operations is None:
        operations = []
    if not isinstance(operations, list):
        raise BadRequest(
            f"json: cannot unmarshal {go_json_type(operations)} into Go value of type "
            "jsonpatch.Patch"
        )
    for op in operations:
        if not isinstance(op, dict) and op is not None:
            raise BadRequest(
                f"json: cannot unmarshal {go_json_type(op)} into Go value of type "
                "jsonpatch.Operation"
            )
    if len(operations) > MAX_JSON_PATCH_OPERATIONS:
        raise RequestEntityTooLarge(
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
            f"got {len(operations)}"
        )
    doc = copy_json(original)
    copied = [0]  # bytes added by `copy` so far, shared by the operations
    try:
        for op in operations:
            doc = _apply_operation(doc, op or {}, copied)
    except _PatchFailed as exc:
        log.debug("json patch does not apply: %s", exc)
        raise Invalid(REJECTED_MESSAGE) from exc
    return doc


def decode_pointer_token(token: str) -> str:
    """RFC 6901 unescaping: `~1` is `/`, `~0` is `~` (in one pass, like Go's Replacer)."""
    if "~" not in token:
        return token
    return re.sub(r"~[01]", lambda m: "/" if m.group() == "~1" else "~", token)


def escape_pointer_token(token: str) -> str:
    """RFC 6901 escaping, the inverse of `decode_pointer_token`."""
    return token.replace("~", "~0").replace("/", "~1")


def _string_field(op: dict[str, Any], name: str, kind: str) -> str:
    value = op.get(name)
    if value is None:
        if name == "from":
            raise _PatchFailed(f"{kind} operation failed to decode from: missing value")
        raise _PatchFailed(f"{kind} operation failed to decode path: missing value")
    if not isinstance(value, str):
        raise _PatchFailed(
            f"{kind} operation failed to decode {name}: json: cannot unmarshal "
            f"{go_json_type(value)} into Go value of type string"
        )
    return value


def _apply_operation(doc: Any, op: dict[str, Any], copied: list[int]) -> Any:
    kind = op.get("op")
    if not isinstance(kind, str):
        kind = "unknown"
    if kind == "add":
        path = _string_field(op, "path", kind)
        container, key = _find(doc, path, kind)
        _add(container, key, copy_json(op.get("value")), path)
    elif kind == "remove":
        path = _string_field(op, "path", kind)
        container, key = _find(doc, path, kind)
        _remove(container, key, path)
    elif kind == "replace":
        path = _string_field(op, "path", kind)
        if path == "":
            value = op.get("value")
            if not isinstance(value, (dict, list)):
                raise _PatchFailed("replace operation value must be object or array")
            return copy_json(value)
        container, key = _find(doc, path, kind)
        _get(container, key, path, kind)
        _set(container, key, copy_json(op.get("value")))
    elif kind == "move":
        source = _string_field(op, "from", kind)
        container, key = _find(doc, source, kind, "from ")
        value = _get(container, key, key, kind)
        _remove(container, key, key, kind)
        path = _string_field(op, "path", kind)
        container, key = _find(doc, path, kind, "destination ")
        _add(container, key, value, path, kind)
    elif kind == "copy":
        source = _string_field(op, "from", kind)
        container, key = _find(doc, source, kind, "from ")
        value = _get(container, key, source, kind)
        path = _string_field(op, "path", kind)
        container, key = _find(doc, path, kind, "destination ")
        copied[0] += len(orjson.dumps(value))
        if copied[0] > MAX_JSON_PATCH_COPY_BYTES:
            raise _PatchFailed(
                "Unable to complete the copy, the accumulated size increase of copy is "
                f"{copied[0]}, exceeding the limit {MAX_JSON_PATCH_COPY_BYTES}"
            )
        _add(container, key, copy_json(value), path, kind)
    elif kind == "test":
        path = _string_field(op, "path", kind)
        _test(doc, op, path)
    else:
        raise _PatchFailed(f"Unexpected kind: {kind}")
    return doc


def _test(doc: Any, op: dict[str, Any], path: str) -> None:
    has_value = "value" in op
    expected = op.get("value")
    if path == "":
        if has_value and json_equal(doc, expected):
            return
        raise _PatchFailed(f"testing value {path} failed: test failed")
    container, key = _find(doc, path, "test")
    actual = _get(container, key, path, "test")
    if actual is None:
        if expected is None:
            return
    elif has_value and expected is not None and json_equal(actual, expected):
        return
    raise _PatchFailed(f"testing value {path} failed: test failed")


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: unlike Python's, `true` is not `1` and `1` is not `1.0`."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _find(
    doc: Any, path: str, kind: str, which: str = ""
) -> tuple[dict[str, Any] | list[Any], str]:
    """The container holding the pointer's last token, and that token (unescaped)."""
    parts = path.split("/")
    node: Any = doc if len(parts) >= 2 else None
    for part in parts[1:-1]:
        if node is None:
            break
        try:
            node = _lookup(node, decode_pointer_token(part))
        except _PatchFailed:
            node = None
    if not isinstance(node, (dict, list)):
        missing = f'"{path}"' if kind in ("add", "remove") else path
        is_test = kind == "test"
        raise _PatchFailed(
            f"{kind} operation does not apply: {'is' if is_test else 'doc is'} missing "
            f"{which}path: {missing}: missing value"
        )
    return node, decode_pointer_token(parts[-1])


def _lookup(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list):
        return node[_index(node, key, len(node) - 1)]
    return None


def _index(array: list[Any], key: str, highest: int) -> int:
    """Upstream's Atoi plus negative indices counted from the end (highest is inclusive)."""
    if not _INDEX.match(key):
        raise _PatchFailed(f'strconv.Atoi: parsing "{key}": invalid syntax')
    idx = int(key)
    if idx < 0:
        if idx < -(highest + 1):
            raise _PatchFailed(f"Unable to access invalid index: {idx}: invalid index referenced")
        idx += highest + 1
    if idx > highest:
        raise _PatchFailed(f"Unable to access invalid index: {idx}: invalid index referenced")
    return idx


def _get(container: dict[str, Any] | list[Any], key: str, path: str, kind: str) -> Any:
    if isinstance(container, dict):
        return container.get(key)
    try:
        return container[_index(container, key, len(container) - 1)]
    except _PatchFailed as exc:
        raise _PatchFailed(f"error in {kind} for path: '{path}': {exc}") from None


def _set(container: dict[str, Any] | list[Any], key: str, value: Any) -> None:
    if isinstance(container, dict):
        container[key] = value
    else:
        container[_index(container, key, len(container) - 1)] = value


def _add(
    container: dict[str, Any] | list[Any], key: str, value: Any, path: str, kind: str = "add"
) -> None:
    if isinstance(container, dict):
        container[key] = value
        return
    if key == "-":
        container.append(value)
        return
    try:
        if not _INDEX.match(key):
            raise _PatchFailed(f"value was not a proper array index: '{key}'")
        container.insert(_index(container, key, len(container)), value)
    except _PatchFailed as exc:
        raise _PatchFailed(f"error in {kind} for path: '{path}': {exc}") from None


def _remove(
    container: dict[str, Any] | list[Any], key: str, path: str, kind: str = "remove"
) -> None:
    try:
        if isinstance(container, dict):
            if key not in container:
                raise _PatchFailed(f"Unable to remove nonexistent key: {key}: missing value")
            del container[key]
        else:
            del container[_index(container, key, len(container) - 1)]
    except _PatchFailed as exc:
        raise _PatchFailed(f"error in {kind} for path: '{path}': {exc}") from None
