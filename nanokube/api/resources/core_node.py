"""Node: cluster-scoped, created by its kubelet together with its status.

STATUS reads `Ready`, `NotReady` or `Unknown` from the Ready condition, plus
`SchedulingDisabled` when cordoned; ROLES come from `node-role.kubernetes.io/ROLE`
labels (and the older `kubernetes.io/role`). Once set, `spec.podCIDR(s)` and
`spec.providerID` never change, as upstream's `ValidateNodeUpdate` demands.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.resources.core_common import AGE, age_cell, spec_of, status_of
from nanokube.api.resources.pod_containers import TAINT_EFFECTS
from nanokube.api.validators import (
    duplicate,
    forbidden,
    invalid,
    label_value,
    name_is_dns_subdomain,
    not_supported,
    qualified_name,
    required,
    validate_object_meta,
    validate_object_meta_update,
)

Obj = dict[str, Any]

ROLE_PREFIX = "node-role.kubernetes.io/"


def default_node(node: Obj) -> None:
    """`SetDefaults_NodeStatus`: allocatable defaults to capacity."""
    status = node.get("status")
    if isinstance(status, dict) and status.get("capacity") and status.get("allocatable") is None:
        status["allocatable"] = copy.deepcopy(status["capacity"])


def validate_taints(taints: list[Obj], path: str) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(taints):
        tpath = f"{path}[{i}]"
        key = taint.get("key", "")
        if not key:
            causes.append(required(f"{tpath}.key"))
        causes += [invalid(f"{tpath}.key", key, m) for m in qualified_name(key)] if key else []
        value = taint.get("value", "")
        causes += [invalid(f"{tpath}.value", value, m) for m in label_value(value)]
        effect = taint.get("effect", "")
        if not effect:
            causes.append(required(f"{tpath}.effect"))
        elif effect not in TAINT_EFFECTS:
            causes.append(not_supported(f"{tpath}.effect", effect, TAINT_EFFECTS))
        if (key, effect) in seen:
            causes.append(duplicate(tpath, taint))
        seen.add((key, effect))
    return causes


def validate_node(node: Obj) -> list[Cause]:
    causes = validate_object_meta(node, False, name_is_dns_subdomain)
    spec = spec_of(node)
    causes += validate_taints(spec.get("taints") or [], "spec.taints")
    for i, cidr in enumerate(spec.get("podCIDRs") or []):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            causes.append(
                invalid(
                    f"spec.podCIDRs[{i}]",
                    cidr,
                    "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                )
            )
    return causes


def validate_node_update(new: Obj, old: Obj) -> list[Cause]:
    causes = validate_object_meta_update(new, old) + validate_node(new)
    new_spec, old_spec = spec_of(new), spec_of(old)
    old_cidrs = old_spec.get("podCIDRs") or []
    if old_cidrs and (new_spec.get("podCIDRs") or []) != old_cidrs:
        causes.append(
            forbidden(
                "spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid'
            )
        )
    if old_spec.get("providerID") and new_spec.get("providerID") != old_spec["providerID"]:
        causes.append(
            forbidden(
                "spec.providerID", 'node updates may not change providerID except from "" to valid'
            )
        )
    return causes


def _node_status(node: Obj) -> str:
    states = []
    for cond in status_of(node).get("conditions") or []:
        if cond.get("type") == "Ready":
            states = ["Ready" if cond.get("status") == "True" else "NotReady"]
    states = states or ["Unknown"]
    if spec_of(node).get("unschedulable"):
        states.append("SchedulingDisabled")
    return ",".join(states)


def node_roles(node: Obj) -> list[str]:
    roles = set()
    for key, value in ((node.get("metadata") or {}).get("labels") or {}).items():
        if key.startswith(ROLE_PREFIX) and key[len(ROLE_PREFIX) :]:
            roles.add(key[len(ROLE_PREFIX) :])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return sorted(roles)


def _address(node: Obj, kind: str) -> str:
    for address in status_of(node).get("addresses") or []:
        if address.get("type") == kind:
            return address.get("address", "")
    return "<none>"


def node_row(node: Obj) -> list[Any]:
    info = status_of(node).get("nodeInfo") or {}
    return [
        _node_status(node),
        ",".join(node_roles(node)) or "<none>",
        age_cell(node),
        info.get("kubeletVersion", ""),
        _address(node, "InternalIP"),
        _address(node, "ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


NODE = Kind(
    group="",
    version="v1",
    kind="Node",
    plural="nodes",
    namespaced=False,
    short_names=("no",),
    subresources=("status", "proxy"),
    has_status=True,
    status_on_create=True,
    defaults=default_node,
    validate=validate_node,
    validate_update=validate_node_update,
    columns=(
        Column("Status", description="The status of the node"),
        Column("Roles", description="The roles of the node"),
        AGE,
        Column("Version", description="Kubelet Version reported by the node."),
        Column("Internal-IP", priority=1, description="List of addresses reachable to the node."),
        Column("External-IP", priority=1, description="List of addresses reachable to the node."),
        Column(
            "OS-Image",
            priority=1,
            description="OS Image reported by the node from /etc/os-release.",
        ),
        Column("Kernel-Version", priority=1, description="Kernel Version reported by the node."),
        Column(
            "Container-Runtime",
            priority=1,
            description="ContainerRuntime Version reported by the node.",
        ),
    ),
    row=node_row,
    field_selectors={
        "spec.unschedulable": lambda n: "true" if spec_of(n).get("unschedulable") else "false"
    },
    schema_name="io.k8s.api.core.v1.Node",
)
