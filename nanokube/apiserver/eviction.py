"""The `pods/eviction` subresource: delete a pod unless that breaks its disruption budget.

Upstream's `EvictionREST` (`pkg/registry/core/pod/storage/eviction.go`), which
`kubectl drain` relies on. A POST of a policy/v1 `Eviction`
(`{metadata: {name, namespace}, deleteOptions}`) for pod NAME:

1. A pod that cannot disrupt anything more — Pending, Succeeded, Failed, or
   already being deleted — is deleted at once, without looking at budgets.
   Unless the caller gave a resourceVersion precondition, a Pending pod is
   deleted with its current resourceVersion as one, so it cannot turn Running
   (and count against a budget) in between.
2. Otherwise the PodDisruptionBudgets of the pod's namespace whose selector
   matches the pod are found: more than one is an error (500), none means
   the pod is deleted.
3. An unready pod is deleted without spending the budget when the budget's
   `unhealthyPodEvictionPolicy` is AlwaysAllow, or (IfHealthyBudget, the
   default) when the budget is currently met; the delete then carries the
   pod's resourceVersion, so a pod that became ready meanwhile is refused
   with 429 and the client retries.
4. Otherwise the budget is checked and decremented: a budget the disruption
   controller has not yet observed (`observedGeneration < generation`) gives
   429 with Retry-After 10; `disruptionsAllowed == 0` gives 429
   "Cannot evict pod as it would violate the pod's disruption budget." with a
   `DisruptionBudget` cause; else `disruptionsAllowed` drops by one, the pod
   is recorded in `disruptedPods` (so the controller stops counting it as
   healthy before the deletion shows) and the budget's status is written,
   retried with a fresh read on a conflict.
5. The pod gets the `DisruptionTarget` condition (reason
   EvictionByEvictionAPI) and is deleted with the eviction's deleteOptions.

The answer is a `Status` Success with code 201. `evict` is what both the
in-process client (its subresource mapping) and the HTTP route call.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from nanokube.api import errors, meta, selectors
from nanokube.api.errors import Cause
from nanokube.api.options import ListOptions, WriteOptions
from nanokube.api.resources.core import POD
from nanokube.api.resources.groups import POD_DISRUPTION_BUDGET
from nanokube.apiserver import codec
from nanokube.apiserver.requestinfo import RequestInfo

if TYPE_CHECKING:
    from nanokube.apiserver.handlers import ResourceHandler
    from nanokube.apiserver.rest import ResourceStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# upstream's MaxDisruptedPodSize: evictions approved but not yet seen by the controller.
MAX_DISRUPTED_POD_SIZE = 2000
# upstream's EvictionsRetry.Steps: attempts when a concurrent writer changes the pod or budget.
EVICTION_ATTEMPTS = 20
VIOLATION_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
# The pod condition saying why the pod is going away (upstream's DisruptionTarget).
DISRUPTION_TARGET = "DisruptionTarget"

SUCCESS: Obj = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Success",
    "code": 201,
}


def _too_many_requests(message: str, cause: str, retry_after: int) -> errors.TooManyRequests:
    return errors.TooManyRequests(
        message, causes=[Cause("", cause, DISRUPTION_BUDGET_CAUSE)], retry_after=retry_after
    )


def still_processing(pdb_name: str) -> errors.TooManyRequests:
    """upstream's createTooManyRequestsError: try again once the controller has caught up."""
    return _too_many_requests(
        VIOLATION_MESSAGE,
        f"The disruption budget {pdb_name} is still being processed by the server.",
        10,
    )


def _is_dry_run(options: Obj) -> bool:
    return "All" in (options.get("dryRun") or ())


def _rv_precondition(options: Obj) -> str:
    return ((options.get("preconditions") or {}).get("resourceVersion")) or ""


def _with_rv_precondition(options: Obj, rv: str) -> Obj:
    out = copy.deepcopy(options)
    out.setdefault("preconditions", {})["resourceVersion"] = rv
    return out


def can_ignore_pdb(pod: Obj) -> bool:
    """Pods whose deletion disrupts nothing more: not started, finished, or already going."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(
        pod["metadata"].get("deletionTimestamp")
    )


def _should_enforce_resource_version(pod: Obj) -> bool:
    """A Pending pod may become Running (and healthy) before the delete lands."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def _is_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or ()
    )


def matching_budgets(budgets: list[Obj], pod: Obj) -> list[Obj]:
    """The budgets whose selector matches the pod (a missing selector matches nothing)."""
    found = []
    for pdb in budgets:
        try:
            selector = selectors.label_selector_from_object((pdb.get("spec") or {}).get("selector"))
        except errors.StatusError:
            continue  # an invalid selector matches no pod
        if selector.matches_object(pod):
            found.append(pdb)
    return found


def update_disruption_allowed_condition(status: Obj) -> None:
    """upstream's pdbhelper.UpdateDisruptionAllowedCondition, on a status dict (in place).

    As `meta.SetStatusCondition`: the transition time changes only with the status.
    """
    allowed = (status.get("disruptionsAllowed") or 0) > 0
    cond = {
        "type": "DisruptionAllowed",
        "status": "True" if allowed else "False",
        "reason": "SufficientPods" if allowed else "InsufficientPods",
        "message": "",
        "observedGeneration": status.get("observedGeneration") or 0,
    }
    conditions = status.setdefault("conditions", [])
    for current in conditions:
        if current.get("type") == "DisruptionAllowed":
            if current.get("status") != cond["status"] or not current.get("lastTransitionTime"):
                current["lastTransitionTime"] = meta.now_rfc3339()
            current.update({k: v for k, v in cond.items() if k != "type"})
            return
    conditions.append({**cond, "lastTransitionTime": meta.now_rfc3339()})


async def _check_and_decrement(
    resources: ResourceStore, pod_name: str, pdb: Obj, dry_run: bool
) -> None:
    """Spend one disruption of `pdb` on `pod_name`, or raise why not."""
    name = pdb["metadata"]["name"]
    status = copy.deepcopy(pdb.get("status") or {})
    if (status.get("observedGeneration") or 0) < (pdb["metadata"].get("generation") or 0):
        raise still_processing(name)
    allowed = status.get("disruptionsAllowed") or 0
    if allowed < 0:
        raise errors.Forbidden(
            f'poddisruptionbudgets.policy "{name}" is forbidden: pdb disruptions allowed is negative',
            kind="poddisruptionbudgets",
            group="policy",
            name=name,
        )
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_POD_SIZE:
        raise errors.Forbidden(
            f'poddisruptionbudgets.policy "{name}" is forbidden: DisruptedPods map too big - '
            "too many evictions not confirmed by PDB controller",
            kind="poddisruptionbudgets",
            group="policy",
            name=name,
        )
    if allowed == 0:
        raise _too_many_requests(
            VIOLATION_MESSAGE,
            f"The disruption budget {name} needs {status.get('desiredHealthy') or 0} healthy "
            f"pods and has {status.get('currentHealthy') or 0} currently",
            0,
        )
    status["disruptionsAllowed"] = allowed - 1
    if status["disruptionsAllowed"] == 0:
        update_disruption_allowed_condition(status)
    if dry_run:
        return
    status.setdefault("disruptedPods", {})[pod_name] = meta.now_rfc3339()
    body = copy.deepcopy(pdb)
    body["status"] = status
    await resources.update(
        POD_DISRUPTION_BUDGET,
        meta.namespace(pdb),
        name,
        body,
        WriteOptions(),
        [],
        subresource="status",
    )


async def _add_condition_and_delete(
    resources: ResourceStore, namespace: str, name: str, options: Obj
) -> None:
    """Mark the pod a DisruptionTarget (unless a dry run), then delete it with `options`."""
    dry_run = _is_dry_run(options)
    if not dry_run:
        pod = copy.deepcopy(await resources.get(POD, namespace, name))
        md = pod["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != md.get("uid"):
            raise errors.Conflict(
                f'Operation cannot be fulfilled on Pod "{name}": the UID in the precondition '
                f"({pre['uid']}) does not match the UID in record ({md.get('uid')}). "
                "The object might have been deleted and then recreated",
                kind="Pod",
                name=name,
            )
        rv = _rv_precondition(options)
        if rv and rv != md.get("resourceVersion"):
            raise errors.Conflict(
                f'Operation cannot be fulfilled on Pod "{name}": the ResourceVersion in the '
                f"precondition ({rv}) does not match the ResourceVersion in record "
                f"({md.get('resourceVersion')}). The object might have been modified",
                kind="Pod",
                name=name,
            )
        if _set_disruption_target(pod):
            updated = await resources.update(
                POD, namespace, name, pod, WriteOptions(), [], subresource="status"
            )
            if rv:  # our own write moved the version on: the precondition follows it
                options = _with_rv_precondition(options, updated["metadata"]["resourceVersion"])
    delete_options = {k: v for k, v in options.items() if k != "dryRun"}
    await resources.delete(POD, namespace, name, delete_options, WriteOptions(dry_run=dry_run))


def _set_disruption_target(pod: Obj) -> bool:
    """upstream's UpdatePodCondition with DisruptionTarget; False when already so."""
    wanted = {
        "type": DISRUPTION_TARGET,
        "status": "True",
        "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
    }
    conditions = pod.setdefault("status", {}).setdefault("conditions", [])
    for cond in conditions:
        if cond.get("type") == DISRUPTION_TARGET:
            if all(cond.get(k) == v for k, v in wanted.items()):
                return False
            if cond.get("status") != "True":
                cond["lastTransitionTime"] = meta.now_rfc3339()
            cond.update(wanted)
            return True
    conditions.append({**wanted, "lastProbeTime": None, "lastTransitionTime": meta.now_rfc3339()})
    return True


async def evict(resources: ResourceStore, namespace: str, name: str, body: Obj) -> Obj:
    """Evict pod `namespace/name` as the Eviction `body` asks; a Status Success (201)."""
    if not isinstance(body, dict):
        raise errors.BadRequest("the body of the request was in an unknown format")
    if (body.get("metadata") or {}).get("name") != name:
        raise errors.BadRequest("name in URL does not match name in Eviction object")
    options: Obj = dict(body.get("deleteOptions") or {})
    retry_conflicts = not _rv_precondition(options)

    pod: Obj = {}
    for attempt in range(EVICTION_ATTEMPTS):
        pod = await resources.get(POD, namespace, name)
        if not can_ignore_pdb(pod):
            break
        delete_options = options
        if _should_enforce_resource_version(pod) and retry_conflicts:
            delete_options = _with_rv_precondition(options, pod["metadata"]["resourceVersion"])
        try:
            await _add_condition_and_delete(resources, namespace, name, delete_options)
        except errors.Conflict:
            if not retry_conflicts or attempt == EVICTION_ATTEMPTS - 1:
                raise
            continue
        log.info("evicted pod=%s/%s pdb_checked=false", namespace, name)
        return dict(SUCCESS)

    budgets = (await resources.list(POD_DISRUPTION_BUDGET, namespace, ListOptions()))["items"]
    found = matching_budgets(budgets, pod)
    if len(found) > 1:
        raise errors.StatusError(
            "This pod has more than one PodDisruptionBudget, "
            "which the eviction subresource does not support."
        )
    pdb_name = ""
    unhealthy_allowed = False
    if found:
        pdb = found[0]
        pdb_name = pdb["metadata"]["name"]
        unhealthy_allowed = not _is_ready(pod) and _unhealthy_may_go(pdb)
        if not unhealthy_allowed:
            await _spend_budget(resources, pod, pdb, _is_dry_run(options))

    delete_options = options
    if unhealthy_allowed:
        delete_options = _with_rv_precondition(options, pod["metadata"]["resourceVersion"])
    try:
        await _add_condition_and_delete(resources, namespace, name, delete_options)
    except errors.Conflict:
        if unhealthy_allowed and retry_conflicts:
            raise still_processing(pdb_name) from None  # the pod changed: the client retries
        raise
    log.info("evicted pod=%s/%s pdb=%s", namespace, name, pdb_name or "-")
    return dict(SUCCESS)


def _unhealthy_may_go(pdb: Obj) -> bool:
    """An unready pod is deleted without spending the budget (upstream's policy rules)."""
    if (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        return True
    status = pdb.get("status") or {}
    desired = status.get("desiredHealthy") or 0
    return (status.get("currentHealthy") or 0) >= desired and desired > 0


async def _spend_budget(resources: ResourceStore, pod: Obj, pdb: Obj, dry_run: bool) -> None:
    """`_check_and_decrement`, re-reading the budget after each conflicting write."""
    name = pdb["metadata"]["name"]
    for attempt in range(EVICTION_ATTEMPTS):
        try:
            await _check_and_decrement(resources, pod["metadata"]["name"], pdb, dry_run)
            return
        except errors.Conflict:
            if attempt == EVICTION_ATTEMPTS - 1:
                raise errors.Timeout(
                    f'couldn\'t update PodDisruptionBudget "{name}" due to conflicts',
                    retry_after=10,
                ) from None
            pdb = await resources.get(POD_DISRUPTION_BUDGET, meta.namespace(pod), name)


def register(handler: ResourceHandler) -> None:
    """Serve POST `pods/{name}/eviction` from `handler` (the HTTP side of `evict`)."""

    async def handle(request: web.Request, info: RequestInfo) -> web.StreamResponse:
        if request.method != "POST":
            raise errors.MethodNotAllowed(
                "the server does not allow this method on the requested resource"
            )
        body = codec.decode_body(await request.read(), codec.media_type(request))
        if not isinstance(body, dict):
            raise errors.BadRequest("the body of the request was in an unknown format")
        query_dry_run = request.query.getall("dryRun", [])
        if query_dry_run:
            options = body.setdefault("deleteOptions", None) or {}
            body_dry_run = options.get("dryRun") or []
            if body_dry_run and body_dry_run != query_dry_run:
                raise errors.BadRequest(
                    "Non-matching dry-run options in request and content: "
                    f"{query_dry_run} and {body_dry_run}"
                )
            body["deleteOptions"] = {**options, "dryRun": query_dry_run}
        result = await evict(handler.store, info.namespace, info.name, body)
        return codec.json_response(result, 201)

    handler.subresource_handlers[("pods", "eviction")] = handle
