"""What a request path names: a resource, its namespace, object and subresource, and the verb.

Upstream's `RequestInfoFactory`: `/api/v1/namespaces/NS/pods/NAME/log`,
`/apis/apps/v1/deployments` (all namespaces), the legacy `/api/v1/watch/...`
prefix, and the namespace object's own subresources
(`/api/v1/namespaces/NAME/status|finalize`).
"""

from __future__ import annotations

from dataclasses import dataclass

from nanokube.api import errors
from nanokube.api.kinds import Kind, Registry

_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True, slots=True)
class RequestInfo:
    group: str
    version: str
    kind: Kind | None  # None: the group-version's discovery document
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    watch_prefix: bool = False  # the deprecated /watch/ path form


def parse(path: str, registry: Registry) -> RequestInfo | None:
    """None for paths that are not resource paths (discovery roots, health, openapi)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return RequestInfo(group, version, None)
    watch = False
    if rest[0] == "watch":
        watch, rest = True, rest[1:]
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise errors.NotFound("the server could not find the requested resource")
    kind = registry.by_resource(group, version, rest[0])
    if kind is None:
        raise errors.NotFound("the server could not find the requested resource")
    if namespace and not kind.namespaced:
        raise errors.NotFound("the server could not find the requested resource")
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if sub and sub not in kind.subresources:
        raise errors.NotFound("the server could not find the requested resource")
    return RequestInfo(group, version, kind, namespace, name, sub, watch)
