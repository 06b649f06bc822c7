"""A StatefulSet pod's identity: its ordinal, name, labels, hostname and claims.

Pure functions over dicts (upstream's `stateful_set_utils.go`). Pod `web-2` of
StatefulSet `web` has ordinal 2, hostname `web-2`, subdomain `spec.serviceName`
(so it resolves as `web-2.<service>`), the labels
`statefulset.kubernetes.io/pod-name: web-2`, `apps.kubernetes.io/pod-index: "2"`
and `controller-revision-hash: <revision name>`, and, for every
`volumeClaimTemplates` entry `data`, the claim `data-web-2` mounted as the
volume `data` (replacing a template volume of that name).
"""

from __future__ import annotations

import re
from typing import Any

from nanokube.api import meta
from nanokube.api.patch_json import copy_json
from nanokube.controllers import pods
from nanokube.controllers.replicaset import pod_from_template
from nanokube.controllers.revisions import POD_REVISION_LABEL, template_of

Obj = dict[str, Any]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"

_ORDINAL = re.compile(r"(.*)-([0-9]+)\Z")


def parent_and_ordinal(pod: Obj) -> tuple[str, int] | None:
    """(StatefulSet name, ordinal) from a pod's name, or None if it is not NAME-ORDINAL."""
    m = _ORDINAL.match(meta.name(pod))
    return (m.group(1), int(m.group(2))) if m else None


def ordinal_of(sts: Obj, pod: Obj) -> int | None:
    """The pod's ordinal if its name makes it a member of `sts` (`isMemberOf`)."""
    parsed = parent_and_ordinal(pod)
    if parsed is None or parsed[0] != meta.name(sts):
        return None
    return parsed[1]


def start_ordinal(sts: Obj) -> int:
    """`spec.ordinals.start`: the first ordinal (0 unless set)."""
    return int(((sts.get("spec") or {}).get("ordinals") or {}).get("start") or 0)


def pod_name(sts: Obj, ordinal: int) -> str:
    return f"{meta.name(sts)}-{ordinal}"


def claim_name(template: Obj, sts: Obj, ordinal: int) -> str:
    """`getPersistentVolumeClaimName`: `<template>-<sts>-<ordinal>`."""
    return f"{meta.name(template)}-{meta.name(sts)}-{ordinal}"


def revision_of(pod: Obj) -> str:
    return meta.labels(pod).get(POD_REVISION_LABEL, "")


def is_created(pod: Obj) -> bool:
    """The API has the pod and gave it a phase."""
    return bool((pod.get("status") or {}).get("phase"))


def is_terminating(pod: Obj) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def is_finished(pod: Obj) -> bool:
    """Succeeded or Failed: a StatefulSet replaces such pods."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_running_and_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and pods.is_ready(pod)


def is_healthy(pod: Obj, min_ready_seconds: int) -> bool:
    """`isHealthy`: running, ready for `minReadySeconds`, and not being deleted."""
    return (
        is_running_and_ready(pod)
        and pods.is_available(pod, min_ready_seconds)
        and not is_terminating(pod)
    )


def claims_for(sts: Obj, ordinal: int) -> list[Obj]:
    """The PersistentVolumeClaims pod `ordinal` needs (`getPersistentVolumeClaims`).

    Each gets its template's labels plus the StatefulSet selector's matchLabels,
    as upstream, so that the claims of a set can be found by its selector.
    """
    spec = sts.get("spec") or {}
    match_labels = (spec.get("selector") or {}).get("matchLabels") or {}
    claims = []
    for template in spec.get("volumeClaimTemplates") or ():
        tmd = template.get("metadata") or {}
        claim: Obj = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": claim_name(template, sts, ordinal),
                "namespace": meta.namespace(sts),
                "labels": {**(tmd.get("labels") or {}), **match_labels},
            },
            "spec": copy_json(template.get("spec") or {}),
        }
        if tmd.get("annotations"):
            claim["metadata"]["annotations"] = copy_json(tmd["annotations"])
        claims.append(claim)
    return claims


def new_pod(sts: Obj, revision: Obj, ordinal: int, owner_ref: Obj) -> Obj:
    """The pod `ordinal` of `sts` made from `revision`'s template (`newVersionedStatefulSetPod`)."""
    spec = sts.get("spec") or {}
    versioned = {**sts, "spec": {**spec, "template": template_of(revision)}}
    pod = pod_from_template(versioned, owner_ref)
    name = pod_name(sts, ordinal)
    md = pod["metadata"]
    del md["generateName"]
    md["name"] = name
    md["labels"] = {
        **(md.get("labels") or {}),
        POD_NAME_LABEL: name,
        POD_INDEX_LABEL: str(ordinal),
        POD_REVISION_LABEL: meta.name(revision),
    }
    pod_spec = pod["spec"]
    pod_spec["hostname"] = name
    if spec.get("serviceName"):
        pod_spec["subdomain"] = spec["serviceName"]
    claims = {
        meta.name(t): claim_name(t, sts, ordinal) for t in spec.get("volumeClaimTemplates") or ()
    }
    if claims:
        # upstream's updateStorage: the claims' volumes first, then the template's others.
        volumes = [
            {"name": volume, "persistentVolumeClaim": {"claimName": claim}}
            for volume, claim in claims.items()
        ]
        volumes += [v for v in pod_spec.get("volumes") or () if v.get("name") not in claims]
        pod_spec["volumes"] = volumes
    return pod
