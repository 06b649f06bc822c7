"""Which nodes a DaemonSet runs on, and how its pods are pinned to them.

Pure functions over dicts, as upstream's `daemon/util` and the scheduling
helpers it calls (`component-helpers/scheduling/corev1`):

- a node is eligible when it matches the template's `nodeSelector` and
  required node affinity (terms ORed, requirements within a term ANDed, an
  empty term matches nothing) and every NoSchedule/NoExecute taint is
  tolerated; a pod already on a node whose only untolerated taints are
  NoSchedule may stay (`should_continue_running`), a NoExecute one must go;
- every DaemonSet pod tolerates upstream's default taints (not-ready and
  unreachable NoExecute; disk-, memory- and pid-pressure and unschedulable
  NoSchedule; network-unavailable too for host-network pods);
- a pod is pinned with the required node affinity
  `matchFields: metadata.name In [node]` (replacing any matchFields of the
  template's terms), and the scheduler binds it; until then its target node is
  read back from that affinity.

The scheduler has its own compiled matchers (`nanokube/scheduler/matching.py`);
controllers may not import the scheduler, so these few rules are evaluated here.
"""

from __future__ import annotations

from typing import Any

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


def _requirement_matches(req: Obj, labels: dict[str, str]) -> bool:
    key, op, values = req.get("key", ""), req.get("operator", ""), req.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels and len(values) == 1:
        try:
            have, limit = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > limit if op == "Gt" else have < limit
    return False


def _term_matches(term: Obj, labels: dict[str, str], name: str) -> bool:
    expressions, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not expressions and not fields:
        return False
    if not all(_requirement_matches(e, labels) for e in expressions):
        return False
    return all(
        f.get("key") == "metadata.name" and _requirement_matches(f, {"metadata.name": name})
        for f in fields
    )


def matches_node(pod_spec: Obj, node: Obj) -> bool:
    """`nodeSelector` and required node affinity both match the node."""
    md = node.get("metadata") or {}
    labels, name = md.get("labels") or {}, md.get("name", "")
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if required is None:
        return True
    return any(_term_matches(t, labels, name) for t in required.get("nodeSelectorTerms") or ())


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """`Toleration.ToleratesTaint`."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def should_run(pod_spec: Obj, node: Obj) -> tuple[bool, bool]:
    """`NodeShouldRunDaemonPod`: (should run a pod here, may keep one already here)."""
    if not matches_node(pod_spec, node):
        return False, False
    tolerations = pod_spec.get("tolerations") or []
    untolerated = [
        t
        for t in (node.get("spec") or {}).get("taints") or ()
        if t.get("effect") in ("NoSchedule", "NoExecute")
        and not any(tolerates(tol, t) for tol in tolerations)
    ]
    if any(t.get("effect") == "NoExecute" for t in untolerated):
        return False, False
    if untolerated:
        return False, True
    return True, True
