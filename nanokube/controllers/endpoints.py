"""The Endpoints controller: one Endpoints object per Service with a selector.

As upstream's `pkg/controller/endpoint/endpoints_controller.go`,
`reconcile(namespace/name)`:

1. reads the Service; gone: deletes the Endpoints of that name, done;
2. a Service without a selector (its Endpoints are written by hand) or of
   type ExternalName is left alone;
3. for every pod the selector matches that has an IP and is not terminal
   (nor being deleted, unless `publishNotReadyAddresses`), builds an address
   `{ip, nodeName, targetRef, hostname?}` — ready when the pod's Ready
   condition is True or the Service publishes not-ready addresses, else
   under `notReadyAddresses` — for each Service port whose target port the
   pod has (a named `targetPort` looked up in the pod's container ports); a
   headless Service without ports gets the addresses with no ports;
4. repacks them as upstream's `RepackSubsets`: one subset per distinct set of
   addresses, carrying every port those addresses share, sorted;
5. when subsets, labels or the capacity annotation differ from the stored
   Endpoints (or there is none), writes it: labels are the Service's plus
   `endpoints.kubernetes.io/managed-by: endpoint-controller` and, for a
   headless Service, `service.kubernetes.io/headless`; the annotation
   `endpoints.kubernetes.io/last-change-trigger-time` says when the change
   that caused the write happened; more than 1000 addresses are truncated
   (not-ready ones first) and annotated `endpoints.kubernetes.io/over-capacity:
   truncated`.

Pod events re-sync the Services that select the pod (before and after a
label change); a deleted Endpoints is re-synced (so it comes back); at start
every existing Endpoints is queued once, so those left behind by a Service
deleted while the controller was down are removed.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.patch_json import copy_json
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_service import ENDPOINTS, SERVICE
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers import endpoint_util as eu
from nanokube.controllers import pods as podutil
from nanokube.controllers.base import Controller

log = logging.getLogger(__name__)

Obj = dict[str, Any]

MANAGED_BY_LABEL = "endpoints.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpoint-controller"
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
# upstream's maxCapacity: the most addresses one Endpoints object carries.
MAX_CAPACITY = 1000
# Endpoints holding a leader-election record have no Service and must stay.
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"


def _port_key(port: Obj) -> tuple[Any, ...]:
    return (port.get("name", ""), port.get("port", 0), port.get("protocol", ""))


def _address_key(addr: Obj) -> tuple[str, str]:
    return (addr.get("ip", ""), (addr.get("targetRef") or {}).get("uid", ""))


def repack_subsets(entries: list[tuple[Obj, bool, Obj | None]]) -> list[Obj]:
    """Subsets from (address, ready, port or None) entries, as upstream's `RepackSubsets`.

    Each port maps to the addresses offering it (ready wins over not ready for one
    address); ports offered by exactly the same addresses share a subset.
    """
    addresses: dict[tuple[str, str], Obj] = {}
    by_port: dict[tuple[Any, ...], tuple[Obj | None, dict[tuple[str, str], bool]]] = {}
    for addr, ready, port in entries:
        akey = _address_key(addr)
        addresses.setdefault(akey, addr)
        pkey = _port_key(port) if port is not None else ("", -1, "")
        _, ready_by_addr = by_port.setdefault(pkey, (port, {}))
        ready_by_addr[akey] = ready_by_addr.get(akey, False) or ready
    groups: dict[tuple[tuple[tuple[str, str], bool], ...], list[Obj]] = {}
    for port, ready_by_addr in by_port.values():
        members = tuple(sorted(ready_by_addr.items()))
        ports = groups.setdefault(members, [])
        if port is not None:
            ports.append(port)
    subsets = []
    for members, ports in groups.items():
        subset: Obj = {}
        ready_addresses = [addresses[k] for k, r in members if r]
        not_ready = [addresses[k] for k, r in members if not r]
        if ready_addresses:
            subset["addresses"] = ready_addresses
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if ports:
            subset["ports"] = sorted(ports, key=_port_key)
        subsets.append(subset)
    return sorted(subsets, key=lambda s: [_port_key(p) for p in s.get("ports") or ()])


def truncate(subsets: list[Obj]) -> bool:
    """Keep at most MAX_CAPACITY addresses, proportionally per subset, dropping not-ready
    ones first (upstream's `truncateEndpoints`); True when something was dropped."""
    total_ready = sum(len(s.get("addresses") or ()) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses") or ()) for s in subsets)
    if total_ready + total_not_ready <= MAX_CAPACITY:
        return False
    truncate_ready = total_ready > MAX_CAPACITY
    room = MAX_CAPACITY if truncate_ready else MAX_CAPACITY - total_ready
    total = total_ready if truncate_ready else total_not_ready
    left = room
    for subset in subsets:
        field = "addresses" if truncate_ready else "notReadyAddresses"
        current = subset.get(field) or []
        take = min(math.ceil(len(current) / total * room), left)
        subset[field] = current[:take]
        if truncate_ready:
            subset.pop("notReadyAddresses", None)
        left -= len(subset[field])
        if not subset[field]:
            subset.pop(field)
    return True


def desired_subsets(svc: Obj, selected: list[Obj]) -> list[Obj]:
    """The repacked subsets the Service's pods give (see the module docstring)."""
    spec = svc.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    family = eu.address_family(svc)
    ports = spec.get("ports") or []
    entries: list[tuple[Obj, bool, Obj | None]] = []
    for pod in selected:
        if not eu.should_pod_be_in_endpoints(pod, publish_not_ready):
            continue
        ips = eu.pod_ips(pod, family)
        if not ips:
            continue
        addr: Obj = {"ip": ips[0]}
        if eu.should_set_hostname(pod, svc):
            addr["hostname"] = pod["spec"]["hostname"]
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            addr["nodeName"] = node
        addr["targetRef"] = eu.target_ref(pod)
        ready = publish_not_ready or podutil.is_ready(pod)
        if not ports:
            if eu.is_headless(svc):  # headless Services may have no ports
                entries.append((addr, ready, None))
            continue
        for service_port in ports:
            number = eu.find_port(pod, service_port)
            if number is None:
                continue
            port: Obj = {"port": number, "protocol": service_port.get("protocol") or "TCP"}
            if service_port.get("name"):
                port["name"] = service_port["name"]
            if service_port.get("appProtocol"):
                port["appProtocol"] = service_port["appProtocol"]
            entries.append((addr, ready, port))
    return repack_subsets(entries)


def _compared_labels(endpoints: Obj) -> dict[str, str]:
    labels = dict(meta.labels(endpoints))
    labels.pop(eu.HEADLESS_LABEL, None)
    labels.pop(MANAGED_BY_LABEL, None)
    return labels


class EndpointsController(Controller):
    name = "endpoint-controller"
    workers = 5  # upstream's --concurrent-endpoint-syncs

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        super().__init__(client, informers)
        # The Services are the keys; an Endpoints object shares its Service's name.
        self.services = self.watch(informers.informer(SERVICE))
        # Pods: the candidates for every Service's selector.
        self.pods = self.watch(informers.informer(POD))
        # What is stored, to write only differences and to notice deletions.
        self.endpoints = self.watch(informers.informer(ENDPOINTS))
        # The last-change-trigger-time state of each Service.
        self.trigger_times = eu.TriggerTimeTracker()
        self.enqueue_events(self.services)
        self.pods.add_event_handler(self._pod_changed, self._pod_updated, self._pod_changed)
        self.endpoints.add_event_handler(on_delete=self.enqueue)

    def _pod_changed(self, pod: Obj) -> None:
        for svc in eu.services_for_pod(self.services, pod):
            self.enqueue(svc)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        if meta.labels(old) != meta.labels(new):
            self._pod_changed(old)
        self._pod_changed(new)

    async def run(self) -> None:
        """Queue every stored Endpoints once (leftovers of deleted Services), then run."""
        for informer in self.watched:
            await informer.wait_for_sync()
        for ep in self.endpoints.list():
            if LEADER_ANNOTATION not in (ep["metadata"].get("annotations") or {}):
                self.enqueue(ep)
        await super().run()

    async def reconcile(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc = self.services.get(name, ns)
        if svc is None:
            self.trigger_times.forget(ns, name)
            if self.endpoints.get(name, ns) is not None:
                log.info("deleting endpoints of a deleted service service=%s", key)
                try:
                    await self.client.delete(ENDPOINTS, name, ns)
                except errors.NotFound:
                    pass
            return
        spec = svc.get("spec") or {}
        selector = eu.service_selector(svc)
        if selector is None or spec.get("type") == "ExternalName":
            return
        selected = [p for p in self.pods.list(ns) if selector.matches_object(p)]
        subsets = desired_subsets(svc, selected)
        trigger = self.trigger_times.compute(svc, selected)
        await self._write(svc, subsets, trigger)

    async def _write(self, svc: Obj, subsets: list[Obj], trigger: float) -> None:
        ns, name = meta.namespace(svc), meta.name(svc)
        current = self.endpoints.get(name, ns)
        over = truncate(subsets)
        if current is not None:
            annotations = current["metadata"].get("annotations") or {}
            if (
                (current.get("subsets") or []) == subsets
                and _compared_labels(current) == meta.labels(svc)
                and (annotations.get(OVER_CAPACITY) == "truncated") == over
            ):
                return
            new = copy_json(current)
        else:
            new = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name}}
        md = new["metadata"]
        md["namespace"] = ns
        labels = {**meta.labels(svc), MANAGED_BY_LABEL: CONTROLLER_NAME}
        if eu.is_headless(svc):
            labels[eu.HEADLESS_LABEL] = ""
        md["labels"] = labels
        annotations = dict(md.get("annotations") or {})
        if trigger:
            annotations[eu.LAST_CHANGE_TRIGGER_TIME] = eu.format_time(trigger)
        else:
            annotations.pop(eu.LAST_CHANGE_TRIGGER_TIME, None)
        if over:
            annotations[OVER_CAPACITY] = "truncated"
        else:
            annotations.pop(OVER_CAPACITY, None)
        md["annotations"] = annotations
        if subsets:
            new["subsets"] = subsets
        else:
            new.pop("subsets", None)
        try:
            if current is None:
                await self.client.create(ENDPOINTS, new)
            else:
                await self.client.update(ENDPOINTS, new)
        except errors.Forbidden as e:
            if "being terminated" in e.message:
                return  # the namespace is going away: nothing to keep current
            raise
        except errors.StatusError as e:
            if not isinstance(e, errors.Conflict | errors.AlreadyExists):
                reason, what = (
                    ("FailedToCreateEndpoint", "create endpoint for service")
                    if current is None
                    else ("FailedToUpdateEndpoint", "update endpoint")
                )
                self.events.warning(new, reason, f"Failed to {what} {ns}/{name}: {e}")
            raise
        log.debug("endpoints written service=%s/%s subsets=%d", ns, name, len(subsets))
