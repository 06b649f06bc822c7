"""API discovery: legacy (`/api`, `/apis`, `/apis/G/V`) and aggregated (v2) documents.

kubectl 1.33 asks `/api` and `/apis` for the aggregated form first and uses it
only if the reply's Content-Type says so exactly (KUBECTL-WIRE.md §3); then one
round trip discovers every resource. Documents are built once per registry
change and served as bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

from nanokube.api.kinds import Kind, Registry

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

# What a subresource answers with and which verbs it takes: (group, version, kind, verbs);
# an empty kind means the parent's own kind.
_SUBRESOURCES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "status": ("", "", "", ("get", "patch", "update")),
    "scale": ("autoscaling", "v1", "Scale", ("get", "patch", "update")),
    "binding": ("", "v1", "Binding", ("create",)),
    "eviction": ("policy", "v1", "Eviction", ("create",)),
    "log": ("", "v1", "Pod", ("get",)),
    "exec": ("", "v1", "PodExecOptions", ("create", "get")),
    "attach": ("", "v1", "PodAttachOptions", ("create", "get")),
    "portforward": ("", "v1", "PodPortForwardOptions", ("create", "get")),
    "proxy": ("", "v1", "PodProxyOptions", ("create", "delete", "get", "patch", "update")),
    "ephemeralcontainers": ("", "", "", ("get", "patch", "update")),
    "finalize": ("", "", "", ("update",)),
    "token": ("authentication.k8s.io", "v1", "TokenRequest", ("create",)),
}

# Groups that are served but hold no stored kinds (their documents come from elsewhere).
EXTRA_GROUPS: list[tuple[str, str, list[dict[str, Any]]]] = []


def _sub(kind: Kind, name: str) -> tuple[str, str, str, tuple[str, ...]]:
    group, version, k, verbs = _SUBRESOURCES.get(name, ("", "", "", ("get",)))
    if not k:
        group, version, k = kind.group, kind.version, kind.kind
    return group, version, k, verbs


def _legacy_resources(kinds: list[Kind]) -> list[dict[str, Any]]:
    out = []
    for k in sorted(kinds, key=lambda k: k.plural):
        entry: dict[str, Any] = {
            "name": k.plural,
            "singularName": k.singular,
            "namespaced": k.namespaced,
            "kind": k.kind,
            "verbs": list(k.verbs),
        }
        if k.short_names:
            entry["shortNames"] = list(k.short_names)
        if k.categories:
            entry["categories"] = list(k.categories)
        out.append(entry)
        for sub in k.subresources:
            group, version, kind, verbs = _sub(k, sub)
            s: dict[str, Any] = {
                "name": f"{k.plural}/{sub}",
                "singularName": "",
                "namespaced": k.namespaced,
                "kind": kind,
                "verbs": list(verbs),
            }
            if group != k.group or version != k.version:
                s["group"], s["version"] = group, version
            out.append(s)
    return out


def _aggregated_resources(kinds: list[Kind]) -> list[dict[str, Any]]:
    out = []
    for k in sorted(kinds, key=lambda k: k.plural):
        entry: dict[str, Any] = {
            "resource": k.plural,
            "responseKind": {"group": k.group, "version": k.version, "kind": k.kind},
            "scope": "Namespaced" if k.namespaced else "Cluster",
            "singularResource": k.singular,
            "verbs": list(k.verbs),
        }
        if k.short_names:
            entry["shortNames"] = list(k.short_names)
        if k.categories:
            entry["categories"] = list(k.categories)
        subs = []
        for sub in k.subresources:
            group, version, kind, verbs = _sub(k, sub)
            subs.append(
                {
                    "subresource": sub,
                    "responseKind": {"group": group, "version": version, "kind": kind},
                    "verbs": list(verbs),
                }
            )
        if subs:
            entry["subresources"] = subs
        out.append(entry)
    return out


class Discovery:
    """Discovery documents for a registry, rebuilt when `invalidate()` is called."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._docs: dict[str, bytes] = {}

    def invalidate(self) -> None:
        self._docs.clear()

    def _by_gv(self) -> dict[tuple[str, str], list[Kind]]:
        out: dict[tuple[str, str], list[Kind]] = {}
        for k in self.registry:
            out.setdefault((k.group, k.version), []).append(k)
        return out

    def _cached(self, key: str, build: Any) -> bytes:
        doc = self._docs.get(key)
        if doc is None:
            doc = self._docs[key] = orjson.dumps(build())
        return doc

    def api_versions(self) -> bytes:
        return self._cached(
            "/api",
            lambda: {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
            },
        )

    def _group_entries(self) -> list[dict[str, Any]]:
        groups: dict[str, list[str]] = {}
        for (group, version), _ in sorted(self._by_gv().items()):
            if group:
                groups.setdefault(group, []).append(version)
        for group, version, _ in EXTRA_GROUPS:
            groups.setdefault(group, []).append(version)
        out = []
        for group, versions in groups.items():
            gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
            out.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
        return out

    def api_groups(self) -> bytes:
        return self._cached(
            "/apis",
            lambda: {"kind": "APIGroupList", "apiVersion": "v1", "groups": self._group_entries()},
        )

    def api_group(self, group: str) -> bytes | None:
        for entry in self._group_entries():
            if entry["name"] == group:
                return orjson.dumps({"kind": "APIGroup", "apiVersion": "v1", **entry})
        return None

    def resource_list(self, group: str, version: str) -> bytes | None:
        kinds = self._by_gv().get((group, version))
        if kinds is None:
            for g, v, resources in EXTRA_GROUPS:
                if (g, v) == (group, version):
                    kinds, extra = [], resources
                    break
            else:
                return None
        else:
            extra = []
        gv = f"{group}/{version}" if group else version
        return self._cached(
            f"rl:{gv}",
            lambda: {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": gv,
                "resources": _legacy_resources(kinds) + extra,
            },
        )

    def aggregated(self, core: bool) -> bytes:
        """`/api` (core=True) or `/apis` as an APIGroupDiscoveryList."""

        def build() -> dict[str, Any]:
            groups: dict[str, list[dict[str, Any]]] = {}
            for (group, version), kinds in sorted(self._by_gv().items()):
                if (group == "") != core:
                    continue
                groups.setdefault(group, []).append(
                    {
                        "version": version,
                        "resources": _aggregated_resources(kinds),
                        "freshness": "Current",
                    }
                )
            if not core:
                for group, version, resources in EXTRA_GROUPS:
                    groups.setdefault(group, []).append(
                        {
                            "version": version,
                            "resources": [
                                _aggregated_from_legacy(r, group, version) for r in resources
                            ],
                            "freshness": "Current",
                        }
                    )
            return {
                "kind": "APIGroupDiscoveryList",
                "apiVersion": "apidiscovery.k8s.io/v2",
                "metadata": {},
                "items": [{"metadata": {"name": g}, "versions": v} for g, v in groups.items()],
            }

        return self._cached("agg:core" if core else "agg:apis", build)


def _aggregated_from_legacy(r: dict[str, Any], group: str, version: str) -> dict[str, Any]:
    return {
        "resource": r["name"],
        "responseKind": {"group": group, "version": version, "kind": r["kind"]},
        "scope": "Namespaced" if r["namespaced"] else "Cluster",
        "singularResource": r.get("singularName", ""),
        "verbs": r["verbs"],
    }


def wants_aggregated(accept: str) -> str:
    """The aggregated Content-Type to answer with, or "" for the legacy form."""
    if "as=APIGroupDiscoveryList" not in accept:
        return ""
    return AGGREGATED_V2 if "v=v2;" in accept or accept.endswith("v=v2") else AGGREGATED_V2BETA1
