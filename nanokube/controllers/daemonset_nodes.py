"""Which nodes a DaemonSet runs on, and how its pods are pinned to them.

Pure functions over dicts, as upstream's `daemon/util` and the scheduling
helpers it calls (`component-helpers/scheduling/corev1`):

- a node is eligible when it matches the template's `nodeSelector` and
  required node affinity and every NoSchedule/NoExecute taint is tolerated;
  a pod already on a node whose only untolerated taints are NoSchedule may
  stay, a NoExecute one must go (`eligibility`);
- every DaemonSet pod tolerates upstream's default taints (not-ready and
  unreachable NoExecute; disk-, memory- and pid-pressure and unschedulable
  NoSchedule; network-unavailable too for host-network pods);
- a pod is pinned with the required node affinity
  `matchFields: metadata.name In [node]` (replacing any matchFields of the
  template's terms), and the scheduler binds it; until then its target node is
  read back from that affinity.

The matching rules themselves are the scheduler's too: they live in
`nanokube.api.scheduling` (upstream's `component-helpers`), so a DaemonSet
and the scheduler never disagree about a node.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nanokube.api import meta, scheduling
from nanokube.api.patch_json import copy_json

Obj = dict[str, Any]

# upstream's AddOrUpdateDaemonPodTolerations, in its order.
DEFAULT_TOLERATIONS: tuple[tuple[str, str], ...] = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)
NETWORK_UNAVAILABLE = ("node.kubernetes.io/network-unavailable", "NoSchedule")


def with_default_tolerations(pod_spec: Obj) -> Obj:
    """The pod spec with the DaemonSet tolerations added (unless an equal one is there)."""
    spec = copy_json(pod_spec)
    tolerations = list(spec.get("tolerations") or [])
    wanted = list(DEFAULT_TOLERATIONS)
    if spec.get("hostNetwork"):
        wanted.append(NETWORK_UNAVAILABLE)
    for key, effect in wanted:
        toleration = {"key": key, "operator": "Exists", "effect": effect}
        if not any(
            t.get("key") == key and t.get("effect") == effect and t.get("operator") == "Exists"
            for t in tolerations
        ):
            tolerations.append(toleration)
    spec["tolerations"] = tolerations
    return spec


def pin_to_node(pod_spec: Obj, node_name: str) -> None:
    """`ReplaceDaemonSetPodNodeNameNodeAffinity` (in place)."""
    field = {"key": "metadata.name", "operator": "In", "values": [node_name]}
    affinity = pod_spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        terms = [{"matchFields": [field]}]
    else:
        terms = [{**t, "matchFields": [dict(field)]} for t in terms]
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": terms}


def target_node(pod: Obj) -> str:
    """`GetTargetNodeName`: the bound node, else the node the affinity pins it to."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or ():
        for f in term.get("matchFields") or ():
            values = f.get("values") or []
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and len(values) == 1:
                return str(values[0])
    return ""


def eligibility(pod_spec: Obj, nodes: Iterable[Obj]) -> dict[str, tuple[bool, bool]]:
    """`NodeShouldRunDaemonPod` per node name: (should run a pod here, may keep one already here).

    The pod's node affinity is compiled once for all the nodes.
    """
    affinity = scheduling.compile_required_node_affinity(pod_spec)
    tolerations = pod_spec.get("tolerations") or []
    return {meta.name(n): _should_run(affinity, tolerations, n) for n in nodes}


def _should_run(
    affinity: scheduling.NodeMatcher | None, tolerations: list[Obj], node: Obj
) -> tuple[bool, bool]:
    if not scheduling.match_node(affinity, node):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or ()
    if scheduling.first_untolerated(taints, tolerations, ("NoExecute",)) is not None:
        return False, False
    if scheduling.first_untolerated(taints, tolerations, ("NoSchedule",)) is not None:
        return False, True
    return True, True
