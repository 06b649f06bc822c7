"""Service and Endpoints: defaults, validation and tables as upstream's.

Services follow `SetDefaults_Service` (type ClusterIP, sessionAffinity None,
port protocol TCP, targetPort = port, internalTrafficPolicy Cluster) plus what
upstream's service REST storage fills before validation (single-stack IPv4
families). The cluster IP itself is allocated by the API server, not here.
Service names are DNS-1035 labels upstream (they become DNS names and
environment variables), so `1-svc` is rejected although `1-pod` is not.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.resources.core_common import AGE, age_cell, format_labels, spec_of, status_of
from nanokube.api.resources.pod_containers import PROTOCOLS, enum_causes, port_or_name_causes
from nanokube.api.validators import (
    dns1123_label,
    dns1123_subdomain,
    duplicate,
    forbidden,
    invalid,
    label_causes,
    name_is_dns1035_label,
    name_is_dns_subdomain,
    not_supported,
    port_num,
    required,
    validate_object_meta,
    validate_object_meta_update,
)

Obj = dict[str, Any]

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
IP_MESSAGE = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
MAX_CLIENT_IP_TIMEOUT = 86400


def _valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def default_service(svc: Obj) -> None:
    spec = svc.setdefault("spec", {})
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        client_ip = spec.setdefault("sessionAffinityConfig", {}).setdefault("clientIP", {})
        client_ip.setdefault("timeoutSeconds", 10800)
    spec.setdefault("type", "ClusterIP")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    kind = spec["type"]
    externally_accessible = kind in ("NodePort", "LoadBalancer") or (
        kind == "ClusterIP" and spec.get("externalIPs")
    )
    if externally_accessible:
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if kind in ("ClusterIP", "NodePort", "LoadBalancer"):
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    elif spec.get("clusterIPs") and not spec.get("clusterIP"):
        spec["clusterIP"] = spec["clusterIPs"][0]
    if kind != "ExternalName":
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("ipFamilies", ["IPv4"])


def prepare_service_create(svc: Obj) -> None:
    svc["status"] = {"loadBalancer": {}}


def prepare_service_update(new: Obj, old: Obj) -> None:
    """Upstream's `patchAllocatedValues`: an update that omits the allocated cluster IPs
    and node ports keeps the old ones (so a PUT of the original manifest works)."""
    new_spec, old_spec = spec_of(new), spec_of(old)
    if new_spec.get("type") == "ExternalName" or old_spec.get("type") == "ExternalName":
        return
    if not new_spec.get("clusterIP") and old_spec.get("clusterIP"):
        new_spec["clusterIP"] = old_spec["clusterIP"]
        new_spec["clusterIPs"] = list(old_spec.get("clusterIPs") or [old_spec["clusterIP"]])
    if new_spec.get("type") in ("NodePort", "LoadBalancer"):
        old_ports = {(p.get("port"), p.get("protocol")): p for p in old_spec.get("ports") or []}
        for port in new_spec.get("ports") or []:
            match = old_ports.get((port.get("port"), port.get("protocol")))
            if not port.get("nodePort") and match and match.get("nodePort"):
                port["nodePort"] = match["nodePort"]


def validate_service(svc: Obj) -> list[Cause]:
    causes = validate_object_meta(svc, True, name_is_dns1035_label)
    spec = spec_of(svc)
    kind = spec.get("type", "")
    causes += enum_causes("spec.type", kind, SERVICE_TYPES)
    cluster_ips = spec.get("clusterIPs") or []
    headless = spec.get("clusterIP") == "None"
    if kind == "ExternalName":
        if spec.get("clusterIP"):
            causes.append(forbidden("spec.clusterIP", "may not be set for ExternalName services"))
        name = spec.get("externalName", "")
        if not name:
            causes.append(required("spec.externalName"))
        else:
            causes += [
                invalid("spec.externalName", name, m) for m in dns1123_subdomain(name.rstrip("."))
            ]
    else:
        for i, ip in enumerate(cluster_ips):
            if not (i == 0 and ip == "None") and not _valid_ip(ip):
                causes.append(invalid(f"spec.clusterIPs[{i}]", ip, IP_MESSAGE))
    ports = spec.get("ports") or []
    if not ports and not headless and kind != "ExternalName":
        causes.append(required("spec.ports"))
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        causes += _service_port(port, len(ports) > 1, names, kind, f"spec.ports[{i}]")
        key = (port.get("port"), port.get("protocol"))
        if key in seen:
            causes.append(duplicate(f"spec.ports[{i}]", {"port": key[0], "protocol": key[1]}))
        seen.add(key)
    causes += label_causes(spec.get("selector"), "spec.selector")
    causes += enum_causes(
        "spec.sessionAffinity", spec.get("sessionAffinity", ""), ("ClientIP", "None")
    )
    timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
        "timeoutSeconds"
    )
    if timeout is not None and not 0 < timeout <= MAX_CLIENT_IP_TIMEOUT:
        causes.append(
            invalid(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                timeout,
                f"must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT}",
            )
        )
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in ("SingleStack", "PreferDualStack", "RequireDualStack"):
        causes.append(
            not_supported(
                "spec.ipFamilyPolicy",
                policy,
                ("PreferDualStack", "RequireDualStack", "SingleStack"),
            )
        )
    for i, family in enumerate(spec.get("ipFamilies") or []):
        if family not in ("IPv4", "IPv6"):
            causes.append(not_supported(f"spec.ipFamilies[{i}]", family, ("IPv4", "IPv6")))
    return causes


def _service_port(
    port: Obj, require_name: bool, names: set[str], kind: str, path: str
) -> list[Cause]:
    causes: list[Cause] = []
    name = port.get("name", "")
    if require_name and not name:
        causes.append(required(f"{path}.name"))
    elif name:
        causes += [invalid(f"{path}.name", name, m) for m in dns1123_label(name)]
        if name in names:
            causes.append(duplicate(f"{path}.name", name))
        names.add(name)
    causes += [
        invalid(f"{path}.port", port.get("port"), m) for m in port_num(port.get("port") or 0)
    ]
    causes += enum_causes(f"{path}.protocol", port.get("protocol", ""), PROTOCOLS)
    causes += port_or_name_causes(port.get("targetPort"), f"{path}.targetPort")
    node_port = port.get("nodePort")
    if node_port:
        if kind == "ClusterIP":
            causes.append(
                forbidden(f"{path}.nodePort", "may not be used when `type` is 'ClusterIP'")
            )
        causes += [invalid(f"{path}.nodePort", node_port, m) for m in port_num(node_port)]
    return causes


def validate_service_update(new: Obj, old: Obj) -> list[Cause]:
    """The primary cluster IP may not change once allocated (unless to/from ExternalName)."""
    causes = validate_object_meta_update(new, old) + validate_service(new)
    new_spec, old_spec = spec_of(new), spec_of(old)
    if "ExternalName" in (new_spec.get("type"), old_spec.get("type")):
        return causes
    old_ips, new_ips = old_spec.get("clusterIPs") or [], new_spec.get("clusterIPs") or []
    if old_ips and new_ips and old_ips[0] != new_ips[0]:
        causes.append(invalid("spec.clusterIPs[0]", new_ips, "may not change once set"))
    return causes


def _external_ip(svc: Obj) -> str:
    spec = spec_of(svc)
    external = spec.get("externalIPs") or []
    kind = spec.get("type")
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "LoadBalancer":
        ingress = (status_of(svc).get("loadBalancer") or {}).get("ingress") or []
        lb = sorted(
            {i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")}
        )
        lb_ips = ",".join(lb)
        if external:
            return ",".join([*lb, *external])
        return lb_ips or "<pending>"
    if kind == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def _port_string(ports: list[Obj]) -> str:
    pieces = []
    for p in ports:
        if p.get("nodePort"):
            pieces.append(f"{p.get('port')}:{p['nodePort']}/{p.get('protocol', 'TCP')}")
        else:
            pieces.append(f"{p.get('port')}/{p.get('protocol', 'TCP')}")
    return ",".join(pieces) or "<none>"


def service_row(svc: Obj) -> list[Any]:
    spec = spec_of(svc)
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [
        spec.get("type", ""),
        ips[0] if ips else "<none>",
        _external_ip(svc),
        _port_string(spec.get("ports") or []),
        age_cell(svc),
        format_labels(spec.get("selector")),
    ]


SERVICE = Kind(
    group="",
    version="v1",
    kind="Service",
    plural="services",
    namespaced=True,
    short_names=("svc",),
    categories=("all",),
    subresources=("status", "proxy"),
    has_status=True,
    defaults=default_service,
    prepare_create=prepare_service_create,
    prepare_update=prepare_service_update,
    validate=validate_service,
    validate_update=validate_service_update,
    columns=(
        Column("Type", description="type determines how the Service is exposed."),
        Column("Cluster-IP", description="clusterIP is the IP address of the service."),
        Column(
            "External-IP",
            description="externalIPs is a list of IP addresses for which "
            "nodes in the cluster will also accept traffic for this service.",
        ),
        Column("Port(s)", description="The list of ports that are exposed by this service."),
        AGE,
        Column(
            "Selector",
            priority=1,
            description="Route service traffic to pods with label "
            "keys and values matching this selector.",
        ),
    ),
    row=service_row,
    schema_name="io.k8s.api.core.v1.Service",
)


# --- Endpoints ----------------------------------------------------------------------


def validate_endpoints(ep: Obj) -> list[Cause]:
    causes = validate_object_meta(ep, True, name_is_dns_subdomain)
    for i, subset in enumerate(ep.get("subsets") or []):
        spath = f"subsets[{i}]"
        for key in ("addresses", "notReadyAddresses"):
            for j, address in enumerate(subset.get(key) or []):
                apath = f"{spath}.{key}[{j}]"
                if not _valid_ip(address.get("ip", "")):
                    causes.append(invalid(f"{apath}.ip", address.get("ip", ""), IP_MESSAGE))
                node = address.get("nodeName")
                if node:
                    causes += [
                        invalid(f"{apath}.nodeName", node, m) for m in name_is_dns_subdomain(node)
                    ]
        ports = subset.get("ports") or []
        for j, port in enumerate(ports):
            ppath = f"{spath}.ports[{j}]"
            name = port.get("name", "")
            if len(ports) > 1 and not name:
                causes.append(required(f"{ppath}.name"))
            elif name:
                causes += [invalid(f"{ppath}.name", name, m) for m in dns1123_label(name)]
            causes += [
                invalid(f"{ppath}.port", port.get("port"), m)
                for m in port_num(port.get("port") or 0)
            ]
            causes += enum_causes(f"{ppath}.protocol", port.get("protocol", ""), PROTOCOLS)
    return causes


def default_endpoints(ep: Obj) -> None:
    for subset in ep.get("subsets") or []:
        for port in subset.get("ports") or []:
            port.setdefault("protocol", "TCP")


def format_endpoints(ep: Obj) -> str:
    """`formatEndpoints`: the first three `ip:port`s, then `+ N more...`."""
    shown: list[str] = []
    count = 0
    for subset in ep.get("subsets") or []:
        addresses = subset.get("addresses") or []
        targets = [a.get("ip", "") for a in addresses]
        ports = subset.get("ports") or []
        if ports:
            targets = [_join_host_port(ip, p.get("port")) for p in ports for ip in targets]
        for target in targets:
            count += 1
            if len(shown) < 3:
                shown.append(target)
    if not ep.get("subsets"):
        return "<none>"
    text = ",".join(shown)
    return f"{text} + {count - 3} more..." if count > 3 else text


def _join_host_port(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


ENDPOINTS = Kind(
    group="",
    version="v1",
    kind="Endpoints",
    plural="endpoints",
    singular="endpoints",
    namespaced=True,
    short_names=("ep",),
    defaults=default_endpoints,
    validate=validate_endpoints,
    validate_update=lambda new, old: (
        validate_object_meta_update(new, old) + validate_endpoints(new)
    ),
    columns=(
        Column("Endpoints", description="The set of all endpoints is the union of all subsets."),
        AGE,
    ),
    row=lambda ep: [format_endpoints(ep), age_cell(ep)],
    schema_name="io.k8s.api.core.v1.Endpoints",
)
