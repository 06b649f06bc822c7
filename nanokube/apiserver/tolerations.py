"""DefaultTolerationSeconds admission: how long pods stay on a node that went away.

Upstream's `plugin/pkg/admission/defaulttolerationseconds`: on create, every
pod that does not already tolerate them gets two NoExecute tolerations,

    {key: node.kubernetes.io/not-ready,   operator: Exists, effect: NoExecute, tolerationSeconds: 300}
    {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 300}

so that the node lifecycle controller evicts a pod five minutes (not at once)
after its node became NotReady or unreachable. A toleration with that key (or
no key) and that effect (or no effect) counts as already tolerating, as
upstream's check does. The seconds are the server's
`--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`.
Pure: the caller applies it to a pod being created.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
DEFAULT_SECONDS = 300


def _tolerates(tolerations: list[Obj], key: str) -> bool:
    return any(
        (t.get("key") in (None, "", key)) and (t.get("effect") in (None, "", "NoExecute"))
        for t in tolerations
    )


def default_tolerations(
    pod: Obj,
    not_ready_seconds: int = DEFAULT_SECONDS,
    unreachable_seconds: int = DEFAULT_SECONDS,
) -> None:
    """Add the not-ready and unreachable NoExecute tolerations to `pod` (in place)."""
    spec = pod.setdefault("spec", {})
    tolerations = list(spec.get("tolerations") or [])
    added = False
    for key, seconds in ((NOT_READY, not_ready_seconds), (UNREACHABLE, unreachable_seconds)):
        if not _tolerates(tolerations, key):
            tolerations.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": seconds,
                }
            )
            added = True
    if added:
        spec["tolerations"] = tolerations
