"""The files of configMap, secret, downwardAPI and projected volumes, as payloads.

Pure functions from a volume source and the objects it names to the
`volumes_atomic.Payload` the writer projects; no I/O. The rules are upstream's
(`pkg/volume/{configmap,secret,downwardapi,projected}`):

- without `items` every key becomes a file named after it; with `items` only
  the listed keys, each at its `path`;
- a file's mode is the item's `mode`, else the source's `defaultMode`, else 0644;
  a projected source takes the projected volume's `defaultMode`;
- a missing object or key fails the volume unless the source is `optional`
  (a missing optional object projects nothing);
- downward API files hold one value, labels and annotations as sorted
  `key="value"` lines, resources rounded up to whole `divisor`s with limits
  falling back to the node's allocatable (upstream's `MergeContainerResourceLimits`).
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

from nanokube.api.validators import QuantityError, parse_quantity
from nanokube.kubelet.volumes_atomic import FileProjection, Payload

Obj = dict[str, Any]

DEFAULT_MODE = 0o644


class SourceError(Exception):
    """The volume cannot be built from what the API holds; the message is for an event."""


def _mode(item: Obj, default_mode: int | None) -> int:
    mode = item.get("mode")
    if mode is None:
        mode = default_mode if default_mode is not None else DEFAULT_MODE
    return int(mode) & 0o777


def _keyed(
    what: str,
    name: str,
    data: dict[str, bytes] | None,
    source: Obj,
    default_mode: int | None,
) -> Payload:
    """The payload of a configMap or secret source given the object's decoded data."""
    optional = bool(source.get("optional"))
    if data is None:
        if optional:
            return {}
        raise SourceError(f'{what} "{name}" not found')
    items = source.get("items")
    if not items:
        return {key: FileProjection(value, _mode({}, default_mode)) for key, value in data.items()}
    out: Payload = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise SourceError(
                f"configmap references non-existent config key: {key}"
                if what == "configmap"
                else f"references non-existent secret key: {key}"
            )
        out[item.get("path") or key] = FileProjection(data[key], _mode(item, default_mode))
    return out


def config_map_data(config_map: Obj | None) -> dict[str, bytes] | None:
    if config_map is None:
        return None
    data = {k: str(v).encode() for k, v in (config_map.get("data") or {}).items()}
    for key, value in (config_map.get("binaryData") or {}).items():
        data[key] = base64.b64decode(value)
    return data


def secret_data(secret: Obj | None) -> dict[str, bytes] | None:
    if secret is None:
        return None
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    for key, value in (secret.get("stringData") or {}).items():
        data[key] = str(value).encode()
    return data


def config_map_payload(
    source: Obj, config_map: Obj | None, default_mode: int | None = None
) -> Payload:
    """Files of a `configMap` volume (or projected source); `config_map` None if missing."""
    mode = source.get("defaultMode", default_mode)
    return _keyed("configmap", source.get("name", ""), config_map_data(config_map), source, mode)


def secret_payload(source: Obj, secret: Obj | None, default_mode: int | None = None) -> Payload:
    """Files of a `secret` volume (`secretName`) or projected secret source (`name`)."""
    name = source.get("secretName") or source.get("name", "")
    mode = source.get("defaultMode", default_mode)
    return _keyed("secret", name, secret_data(secret), source, mode)


# --- downward API ------------------------------------------------------------

_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def format_map(values: dict[str, str]) -> str:
    """Upstream's `fieldpath.FormatMap`: sorted `key="value"` lines (Go's %q quoting)."""
    return "\n".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(values.items()))


def field_value(pod: Obj, field_path: str) -> str:
    """A pod field a downwardAPI volume may project (`fieldRef.fieldPath`)."""
    md = pod.get("metadata") or {}
    match = _SUBSCRIPT.match(field_path)
    if match:
        return str((md.get(match.group(1)) or {}).get(match.group(2), ""))
    simple = {
        "metadata.name": md.get("name", ""),
        "metadata.namespace": md.get("namespace", ""),
        "metadata.uid": md.get("uid", ""),
    }
    if field_path in simple:
        return str(simple[field_path])
    if field_path == "metadata.labels":
        return format_map(md.get("labels") or {})
    if field_path == "metadata.annotations":
        return format_map(md.get("annotations") or {})
    raise SourceError(f"unsupported fieldPath: {field_path}")


def resource_value(pod: Obj, ref: Obj, allocatable: dict[str, str], container: str = "") -> str:
    """A container's request or limit (`resourceFieldRef`), in whole `divisor`s, rounded up."""
    name = ref.get("containerName") or container
    resource = ref.get("resource", "")
    spec = pod.get("spec") or {}
    containers = [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]
    found = next((c for c in containers if c.get("name") == name), None)
    if found is None:
        raise SourceError(f"container {name!r} not found in the pod")
    kind, _, res = resource.partition(".")
    if kind not in ("limits", "requests") or res not in ("cpu", "memory", "ephemeral-storage"):
        raise SourceError(f"unsupported container resource: {resource}")
    resources = found.get("resources") or {}
    raw = (resources.get(kind) or {}).get(res)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(res)  # requests default to limits
    if raw is None and kind == "limits":
        raw = allocatable.get(res)
    try:
        amount = parse_quantity(raw if raw is not None else 0)
        divisor = parse_quantity(ref.get("divisor") or "1")
    except QuantityError as e:
        raise SourceError(f"bad quantity for {resource}: {e}") from None
    if divisor <= 0:
        raise SourceError(f"divisor of {resource} must be positive")
    if res == "cpu":
        # Upstream divides milli-values: a divisor of 1m gives millicores.
        return str(math.ceil(math.ceil(amount * 1000) / math.ceil(divisor * 1000)))
    return str(math.ceil(math.ceil(amount) / math.ceil(divisor)))


def downward_api_payload(
    source: Obj, pod: Obj, allocatable: dict[str, str], default_mode: int | None = None
) -> Payload:
    """Files of a `downwardAPI` volume (or projected source)."""
    mode = source.get("defaultMode", default_mode)
    out: Payload = {}
    for item in source.get("items") or ():
        if item.get("fieldRef"):
            text = field_value(pod, item["fieldRef"].get("fieldPath", ""))
        elif item.get("resourceFieldRef"):
            text = resource_value(pod, item["resourceFieldRef"], allocatable)
        else:
            raise SourceError(f"downwardAPI item {item.get('path')!r} has no fieldRef")
        out[item.get("path", "")] = FileProjection(text.encode(), _mode(item, mode))
    return out


# --- service account tokens -------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def placeholder_token(pod: Obj, audience: str, expiration: int, now: float) -> str:
    """An unsigned JWT (`alg: none`) with the claims a bound token carries.

    Used only while the server cannot issue ServiceAccount tokens (no
    `serviceaccounts/token` subresource): it lets a pod start, and no server
    accepts it as a credential.
    """
    md = pod.get("metadata") or {}
    sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
    namespace = md.get("namespace", "default")
    claims = {
        "aud": [audience] if audience else ["https://kubernetes.default.svc.cluster.local"],
        "exp": int(now) + expiration,
        "iat": int(now),
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": f"system:serviceaccount:{namespace}:{sa}",
        "kubernetes.io": {
            "namespace": namespace,
            "pod": {"name": md.get("name", ""), "uid": md.get("uid", "")},
            "serviceaccount": {"name": sa},
        },
    }
    header = {"alg": "none", "typ": "JWT"}
    return f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}."
