"""The EndpointSlice controller: a Service's endpoints as discovery.k8s.io/v1 slices.

As upstream's `pkg/controller/endpointslice/` with the reconciler of
`staging/src/k8s.io/endpointslice/`, `reconcile(namespace/name)`:

1. reads the Service; gone: forgets it (its slices go with it through their
   owner reference and the garbage collector). A Service without a selector
   or of type ExternalName gets no slices from this controller;
2. refuses to act on a stale cache: when a slice this controller wrote is not
   yet in the informer at that version (or one it deleted is still there),
   the key is retried later instead of creating duplicates;
3. for each of the Service's IP families (address type IPv4 or IPv6) builds
   the desired endpoints of the pods the selector matches that have an IP of
   that family and are not terminal — terminating pods included:
   `{addresses, conditions: {ready, serving, terminating}, nodeName, zone,
   hostname?, targetRef}`, where serving is the pod's readiness, terminating
   its deletion, and ready = serving and not terminating (or the Service
   publishes not-ready addresses); `zone` is the node's
   `topology.kubernetes.io/zone` label. Endpoints are grouped by the set of
   ports they resolve (named target ports looked up per pod);
4. compares with the existing slices of the same port set: slices whose
   endpoints all stay unchanged are kept; changed ones are updated, emptied
   ones deleted; new endpoints fill the updated slices, then a kept slice
   that has room for all of them, then new slices of at most 100 endpoints;
   slices of port sets or address types no longer wanted, and slices owned by
   another object, are deleted. A Service with no endpoints keeps one empty
   placeholder slice per address type;
5. new slices are named `<service>-<random>` (generateName) with the labels
   `kubernetes.io/service-name`, `endpointslice.kubernetes.io/managed-by:
   endpointslice-controller.k8s.io`, the Service's own labels (and
   `service.kubernetes.io/headless` for a headless Service), the annotation
   `endpoints.kubernetes.io/last-change-trigger-time`, and a controller
   reference to the Service.

Topology hints and traffic distribution are not computed.
"""

from __future__ import annotations

import logging
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.patch_json import copy_json
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_node import NODE
from nanokube.api.resources.core_service import SERVICE
from nanokube.api.resources.groups import ENDPOINT_SLICE
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers import endpoint_util as eu
from nanokube.controllers import ownership
from nanokube.controllers import pods as podutil
from nanokube.controllers.base import Controller

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
ZONE_LABEL = "topology.kubernetes.io/zone"
# upstream's --max-endpoints-per-slice default.
MAX_ENDPOINTS_PER_SLICE = 100
SERVICE_INDEX = "service"

PortsKey = tuple[tuple[str, int, str, str], ...]


def _slice_service(slice_: Obj) -> list[str]:
    """Index: the `namespace/service` of a slice this controller manages."""
    labels = meta.labels(slice_)
    if labels.get(MANAGED_BY_LABEL) != CONTROLLER_NAME or SERVICE_NAME_LABEL not in labels:
        return []
    return [f"{meta.namespace(slice_)}/{labels[SERVICE_NAME_LABEL]}"]


def ports_key(ports: list[Obj]) -> PortsKey:
    return tuple(
        sorted(
            (
                p.get("name") or "",
                p.get("port") or 0,
                p.get("protocol") or "TCP",
                p.get("appProtocol") or "",
            )
            for p in ports
        )
    )


def endpoint_key(endpoint: Obj) -> str:
    ref = endpoint.get("targetRef") or {}
    return ref.get("uid") or ",".join(endpoint.get("addresses") or ())


class SliceTracker:
    """The resourceVersions of the slices this controller wrote, per Service, until the
    informer shows them (upstream's EndpointSliceTracker): a cache older than our own
    writes must not be acted on."""

    def __init__(self) -> None:
        # service key -> slice name -> resourceVersion written, or None once deleted
        self._written: dict[str, dict[str, int | None]] = {}

    def wrote(self, service_key: str, slice_: Obj) -> None:
        rv = int(slice_["metadata"].get("resourceVersion") or 0)
        self._written.setdefault(service_key, {})[meta.name(slice_)] = rv

    def deleted(self, service_key: str, name: str) -> None:
        self._written.setdefault(service_key, {})[name] = None

    def observed_deletion(self, service_key: str, name: str) -> None:
        """The informer saw the slice go: whatever we expected of it is moot."""
        self._written.get(service_key, {}).pop(name, None)

    def stale(self, service_key: str, cached: list[Obj]) -> bool:
        written = self._written.get(service_key)
        if not written:
            return False
        by_name = {meta.name(s): s for s in cached}
        for name, rv in list(written.items()):
            seen = by_name.get(name)
            if rv is None:
                if seen is not None:
                    return True
            elif seen is None or int(seen["metadata"].get("resourceVersion") or 0) < rv:
                return True
            del written[name]  # caught up
        return False

    def forget(self, service_key: str) -> None:
        self._written.pop(service_key, None)


class EndpointSliceController(Controller):
    name = "endpointslice-controller"
    workers = 5  # upstream's --concurrent-service-endpoint-syncs

    def __init__(self, client: Client, informers: SharedInformerFactory) -> None:
        super().__init__(client, informers)
        # Services are the keys.
        self.services = self.watch(informers.informer(SERVICE))
        # Pods: the candidates for every Service's selector.
        self.pods = self.watch(informers.informer(POD))
        # Nodes: the zone of each endpoint.
        self.nodes = self.watch(informers.informer(NODE))
        # The slices, indexed by the Service they belong to.
        self.slices = self.watch(
            informers.informer(ENDPOINT_SLICE, indexers={SERVICE_INDEX: _slice_service})
        )
        self.max_endpoints_per_slice = MAX_ENDPOINTS_PER_SLICE
        # Our own writes not yet seen by the slice informer.
        self.tracker = SliceTracker()
        # The last-change-trigger-time state of each Service.
        self.trigger_times = eu.TriggerTimeTracker()
        self.enqueue_events(self.services)
        self.pods.add_event_handler(self._pod_changed, self._pod_updated, self._pod_changed)
        self.nodes.add_event_handler(on_update=self._node_updated)
        self.slices.add_event_handler(
            self._slice_changed, lambda _old, new: self._slice_changed(new), self._slice_deleted
        )

    # -- event handlers: they only enqueue ----------------------------------------

    def _pod_changed(self, pod: Obj) -> None:
        for svc in eu.services_for_pod(self.services, pod):
            self.enqueue(svc)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        if meta.labels(old) != meta.labels(new):
            self._pod_changed(old)
        self._pod_changed(new)

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if meta.labels(old).get(ZONE_LABEL) == meta.labels(new).get(ZONE_LABEL):
            return
        for pod in self.pods.list():
            if (pod.get("spec") or {}).get("nodeName") == meta.name(new):
                self._pod_changed(pod)

    def _slice_changed(self, slice_: Obj) -> None:
        for key in _slice_service(slice_):
            self.queue.add(key)

    def _slice_deleted(self, slice_: Obj) -> None:
        for key in _slice_service(slice_):
            self.tracker.observed_deletion(key, meta.name(slice_))
            self.queue.add(key)

    # -- reconcile -------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc = self.services.get(name, ns)
        if svc is None:
            self.tracker.forget(key)
            self.trigger_times.forget(ns, name)
            return
        selector = eu.service_selector(svc)
        if selector is None or (svc.get("spec") or {}).get("type") == "ExternalName":
            return
        existing = self.slices.by_index(SERVICE_INDEX, key)
        if self.tracker.stale(key, existing):
            raise errors.Conflict("EndpointSlice informer cache is out of date")
        selected = [p for p in self.pods.list(ns) if selector.matches_object(p)]
        trigger = self.trigger_times.compute(svc, selected)
        families = (svc.get("spec") or {}).get("ipFamilies") or [eu.address_family(svc)]
        for family in families:
            wanted = [s for s in existing if s.get("addressType") == family]
            await self._reconcile_family(svc, family, selected, wanted, trigger)
        for slice_ in existing:
            if slice_.get("addressType") not in families:
                await self._delete(svc, slice_)

    def desired_endpoints(
        self, svc: Obj, family: str, selected: list[Obj]
    ) -> dict[PortsKey, tuple[list[Obj], dict[str, Obj]]]:
        """Port set -> (ports, endpoints by key) for one address type."""
        spec = svc.get("spec") or {}
        publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
        desired: dict[PortsKey, tuple[list[Obj], dict[str, Obj]]] = {}
        for pod in selected:
            if not eu.should_pod_be_in_endpoints(pod, True):
                continue
            ips = eu.pod_ips(pod, family)
            if not ips:
                continue
            ports = []
            for service_port in spec.get("ports") or ():
                number = eu.find_port(pod, service_port)
                if number is None:
                    continue
                port: Obj = {
                    "name": service_port.get("name") or "",
                    "port": number,
                    "protocol": service_port.get("protocol") or "TCP",
                }
                if service_port.get("appProtocol"):
                    port["appProtocol"] = service_port["appProtocol"]
                ports.append(port)
            endpoint = self._endpoint(svc, pod, ips, publish_not_ready)
            group = desired.setdefault(ports_key(ports), (ports, {}))
            group[1][endpoint_key(endpoint)] = endpoint
        return desired

    def _endpoint(self, svc: Obj, pod: Obj, ips: list[str], publish_not_ready: bool) -> Obj:
        serving = podutil.is_ready(pod)
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        endpoint: Obj = {
            "addresses": ips,
            "conditions": {
                "ready": publish_not_ready or (serving and not terminating),
                "serving": serving,
                "terminating": terminating,
            },
        }
        if eu.should_set_hostname(pod, svc):
            endpoint["hostname"] = pod["spec"]["hostname"]
        endpoint["targetRef"] = eu.target_ref(pod)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name:
            endpoint["nodeName"] = node_name
            node = self.nodes.get(node_name)
            zone = meta.labels(node).get(ZONE_LABEL) if node is not None else None
            if zone:
                endpoint["zone"] = zone
        return endpoint

    async def _reconcile_family(
        self, svc: Obj, family: str, selected: list[Obj], existing: list[Obj], trigger: float
    ) -> None:
        desired = self.desired_endpoints(svc, family, selected)
        labels = self._labels(svc)
        to_delete = [s for s in existing if not _owned_by(s, svc)]
        by_ports: dict[PortsKey, list[Obj]] = {}
        for slice_ in existing:
            if _owned_by(slice_, svc):
                by_ports.setdefault(ports_key(slice_.get("ports") or []), []).append(slice_)
        to_create: list[Obj] = []
        to_update: list[Obj] = []
        kept: list[Obj] = []
        for key, slices in by_ports.items():
            if key not in desired:
                to_delete += slices
        for key, (ports, endpoints) in desired.items():
            plan = self._plan_port_set(by_ports.get(key, []), dict(endpoints), labels)
            to_create += [self._new_slice(svc, family, ports, chunk, labels) for chunk in plan.new]
            to_update += plan.update
            to_delete += plan.delete
            kept += plan.kept
        if not to_create and not to_update and not kept:
            placeholder = next((s for s in to_delete if _is_placeholder(s, svc, labels)), None)
            if placeholder is not None:
                to_delete.remove(placeholder)
            else:
                to_create.append(self._new_slice(svc, family, [], [], labels))
        service_key = f"{meta.namespace(svc)}/{meta.name(svc)}"
        for slice_ in to_create:
            _stamp(slice_, trigger)
            try:
                created = await self.client.create(ENDPOINT_SLICE, slice_)
            except errors.Forbidden as e:
                if "being terminated" in e.message:
                    return
                raise
            self.tracker.wrote(service_key, created)
        for slice_ in to_update:
            _stamp(slice_, trigger)
            self.tracker.wrote(service_key, await self.client.update(ENDPOINT_SLICE, slice_))
        for slice_ in to_delete:
            await self._delete(svc, slice_)
        if to_create or to_update or to_delete:
            log.debug(
                "endpointslices reconciled service=%s type=%s created=%d updated=%d deleted=%d",
                service_key,
                family,
                len(to_create),
                len(to_update),
                len(to_delete),
            )

    def _plan_port_set(
        self, slices: list[Obj], remaining: dict[str, Obj], labels: dict[str, str]
    ) -> _Plan:
        """Which slices of one port set to keep, update, delete, and the new slices' endpoints."""
        plan = _Plan()
        for slice_ in slices:
            endpoints = []
            changed = meta.labels(slice_) != labels
            for endpoint in slice_.get("endpoints") or ():
                want = remaining.pop(endpoint_key(endpoint), None)
                if want is None:
                    changed = True
                    continue
                changed = changed or want != endpoint
                endpoints.append(want)
            if not endpoints:
                plan.delete.append(slice_)  # emptied (or a placeholder no longer needed)
            elif changed:
                updated = copy_json(slice_)
                updated["endpoints"] = endpoints
                updated["metadata"]["labels"] = dict(labels)
                plan.update.append(updated)
            else:
                plan.kept.append(slice_)
        left = sorted(remaining.values(), key=endpoint_key)
        limit = self.max_endpoints_per_slice
        for slice_ in sorted(plan.update, key=lambda s: -len(s["endpoints"])):
            room = limit - len(slice_["endpoints"])
            if room > 0 and left:
                slice_["endpoints"] += left[:room]
                left = left[room:]
        while left:
            if len(left) < limit:
                fits = [s for s in plan.kept if limit - len(s.get("endpoints") or ()) >= len(left)]
                if fits:
                    target = max(fits, key=lambda s: len(s.get("endpoints") or ()))
                    plan.kept.remove(target)
                    updated = copy_json(target)
                    updated["endpoints"] = [*(updated.get("endpoints") or ()), *left]
                    plan.update.append(updated)
                    break
            plan.new.append(left[:limit])
            left = left[limit:]
        return plan

    def _labels(self, svc: Obj) -> dict[str, str]:
        labels = {
            k: v
            for k, v in meta.labels(svc).items()
            if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, eu.HEADLESS_LABEL)
        }
        labels[SERVICE_NAME_LABEL] = meta.name(svc)
        labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
        if eu.is_headless(svc):
            labels[eu.HEADLESS_LABEL] = ""
        return labels

    def _new_slice(
        self, svc: Obj, family: str, ports: list[Obj], endpoints: list[Obj], labels: dict[str, str]
    ) -> Obj:
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": f"{meta.name(svc)}-",
                "namespace": meta.namespace(svc),
                "labels": dict(labels),
                "ownerReferences": [ownership.new_controller_ref(svc, SERVICE)],
            },
            "addressType": family,
            "endpoints": endpoints,
            "ports": ports,
        }

    async def _delete(self, svc: Obj, slice_: Obj) -> None:
        service_key = f"{meta.namespace(svc)}/{meta.name(svc)}"
        try:
            await self.client.delete(ENDPOINT_SLICE, meta.name(slice_), meta.namespace(slice_))
        except errors.NotFound:
            return
        self.tracker.deleted(service_key, meta.name(slice_))


class _Plan:
    """What to do with the slices of one port set."""

    def __init__(self) -> None:
        self.kept: list[Obj] = []
        self.update: list[Obj] = []
        self.delete: list[Obj] = []
        self.new: list[list[Obj]] = []


def _owned_by(slice_: Obj, svc: Obj) -> bool:
    ref = ownership.controller_ref(slice_)
    return ref is not None and ref.get("uid") == svc["metadata"].get("uid")


def _is_placeholder(slice_: Obj, svc: Obj, labels: dict[str, str]) -> bool:
    """Our empty slice, kept rather than deleted and created again."""
    return (
        _owned_by(slice_, svc)
        and not slice_.get("endpoints")
        and not slice_.get("ports")
        and meta.labels(slice_) == labels
    )


def _stamp(slice_: Obj, trigger: float) -> None:
    annotations = dict(slice_["metadata"].get("annotations") or {})
    if trigger:
        annotations[eu.LAST_CHANGE_TRIGGER_TIME] = eu.format_time(trigger)
    else:
        annotations.pop(eu.LAST_CHANGE_TRIGGER_TIME, None)
    slice_["metadata"]["annotations"] = annotations
