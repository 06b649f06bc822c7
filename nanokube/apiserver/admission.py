"""Admission that needs the cluster's state: what a kind's declaration alone cannot decide.

- NamespaceLifecycle: objects are created only in namespaces that exist and are
  not being deleted.
- Priority: a pod's priorityClassName resolved into `spec.priority` (`priority`).
- DefaultTolerationSeconds: pods tolerate not-ready/unreachable nodes for 300 s
  (`tolerations`).
- DefaultStorageClass: claims without a class get the default one (`storageclass`).
- Service IP allocation: a Service of type ClusterIP/NodePort/LoadBalancer gets
  a free IP of the service network (and NodePorts a free port), as upstream's
  service registry allocates them.
- Namespace deletion: a namespace is held by its `spec.finalizers` (the
  namespace controller empties it, then clears them through `/finalize`) and
  shows phase Terminating meanwhile.
"""

from __future__ import annotations

import ipaddress
import random
from typing import TYPE_CHECKING, Any

from nanokube.api import errors
from nanokube.api.kinds import Kind
from nanokube.apiserver import priority, storageclass, tolerations

if TYPE_CHECKING:
    from nanokube.apiserver.rest import ResourceStore

Obj = dict[str, Any]

NODE_PORT_RANGE = (30000, 32767)


def _is(kind: Kind, name: str) -> bool:
    return kind.group == "" and kind.kind == name


async def on_create(registry: ResourceStore, kind: Kind, obj: Obj) -> None:
    md = obj["metadata"]
    if kind.namespaced:
        key = f"/registry/namespaces/{md['namespace']}"
        ns = registry.cache.get(key)
        if ns is None:
            await registry.fresh()  # perhaps created a moment ago
            ns = registry.cache.get(key)
        if ns is None:
            raise errors.not_found("namespaces", md["namespace"])
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.Forbidden(
                f'{kind.plural} "{md["name"]}" is forbidden: unable to create new content in '
                f"namespace {md['namespace']} because it is being terminated",
                kind=kind.plural,
                name=md["name"],
            )
    if _is(kind, "Service"):
        allocate_service_addresses(registry, obj)
    elif _is(kind, "Pod"):
        await priority.resolve_priority(registry, obj)
        tolerations.default_tolerations(obj)
    elif _is(kind, "PersistentVolumeClaim"):
        await storageclass.default_storage_class(registry, obj)


def _used_service_addresses(registry: ResourceStore) -> tuple[set[str], set[int]]:
    ips: set[str] = set()
    ports: set[int] = set()
    for _, svc in registry.cache.prefix("/registry/services/").items():
        spec = svc.get("spec") or {}
        ips.update(spec.get("clusterIPs") or [spec.get("clusterIP")])
        ports.update(p["nodePort"] for p in spec.get("ports") or () if p.get("nodePort"))
    return ips, ports


def allocate_service_addresses(registry: ResourceStore, svc: Obj) -> None:
    spec = svc.setdefault("spec", {})
    network = registry.service_network
    used_ips, used_ports = _used_service_addresses(registry)
    requested = spec.get("clusterIP")
    if requested == "None":
        spec["clusterIPs"] = ["None"]
    elif spec.get("type") != "ExternalName":
        if requested:
            if ipaddress.ip_address(requested) not in network:
                raise errors.invalid(
                    "Service",
                    svc["metadata"]["name"],
                    [
                        errors.Cause(
                            "spec.clusterIPs",
                            f'Invalid value: ["{requested}"]: failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {network}',
                        )
                    ],
                )
            if requested in used_ips:
                raise errors.invalid(
                    "Service",
                    svc["metadata"]["name"],
                    [
                        errors.Cause(
                            "spec.clusterIPs",
                            f'Invalid value: ["{requested}"]: failed to allocate IP {requested}: provided IP is already allocated',
                        )
                    ],
                )
        else:
            requested = _free_ip(network, used_ips, svc["metadata"])
        spec["clusterIP"] = requested
        spec["clusterIPs"] = [requested]
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        for port in spec.get("ports") or ():
            if not port.get("nodePort"):
                port["nodePort"] = _free_port(used_ports)
                used_ports.add(port["nodePort"])


def _free_ip(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network, used: set[str], md: Obj
) -> str:
    # The first address is the `kubernetes` service's, as upstream reserves it.
    first = network.network_address + 1
    if (
        md.get("namespace") == "default"
        and md.get("name") == "kubernetes"
        and str(first) not in used
    ):
        return str(first)
    size = network.num_addresses
    for _ in range(size):
        candidate = str(network.network_address + random.randrange(2, size - 1))
        if candidate not in used:
            return candidate
    raise errors.StatusError("failed to allocate a serviceIP: range is full")


def _free_port(used: set[int]) -> int:
    low, high = NODE_PORT_RANGE
    for _ in range(high - low):
        port = random.randint(low, high)
        if port not in used:
            return port
    raise errors.StatusError("failed to allocate a nodePort: range is full")


def held_by_spec_finalizers(kind: Kind, obj: Obj) -> bool:
    return _is(kind, "Namespace") and bool((obj.get("spec") or {}).get("finalizers"))


def on_delete_mark(kind: Kind, obj: Obj) -> None:
    if _is(kind, "Namespace"):
        obj.setdefault("status", {})["phase"] = "Terminating"
