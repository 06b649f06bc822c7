"""apps/v1: Deployment, ReplicaSet, StatefulSet, DaemonSet, ControllerRevision.

Each kind is declared as upstream's registry strategy and validation define it
(`pkg/apis/apps/v1/defaults.go`, `pkg/apis/apps/validation/validation.go`,
`pkg/registry/apps/*/strategy.go`, `pkg/printers/internalversion/printers.go`),
reimplemented over plain dicts:

- defaults fill what `SetDefaults_*` fills, and the pod template's spec through
  `pod.default_pod_spec`;
- `validate` checks metadata, the selector (required, not empty, matching the
  template's labels), the template (through `pod.validate_pod_template`,
  `restartPolicy: Always`), replica counts and the update strategy;
- `validate_update` adds what only an update can break: the selector is
  immutable in apps/v1, and a StatefulSet's spec may change only in the fields
  upstream lists;
- rows are upstream's printer cells after NAME, wide columns included (the
  client hides them unless `-o wide`).

StatefulSet is declared in `apps_statefulset`. Deployment, ReplicaSet and
StatefulSet serve `/scale` (replicas at `spec.replicas`, `status.replicas`,
selector at `spec.selector`).
"""

from __future__ import annotations

from typing import Any

from nanokube.api import validators as v
from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind, Scale
from nanokube.api.meta import get_path
from nanokube.api.resources import apps_common as c
from nanokube.api.resources import apps_statefulset

Obj = dict[str, Any]

_SELECTOR = Column("Selector", priority=1, description="Label selector for pods.")
_READY = Column("Ready", description="Number of the pod with ready state")
# What Deployment, ReplicaSet and DaemonSet print after their own cells (`c.template_cells`).
_TEMPLATE_COLUMNS = (c.AGE, c.CONTAINERS, c.IMAGES, _SELECTOR)


def _default_rolling_update(spec: Obj, field: str, max_unavailable: Any, max_surge: Any) -> None:
    """A `RollingUpdate` strategy at `spec[field]` unless another type is set, with its limits."""
    strategy = spec.get(field)
    if not isinstance(strategy, dict):
        strategy = spec[field] = {}
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if not isinstance(rolling, dict):
            rolling = strategy["rollingUpdate"] = {}
        rolling.setdefault("maxUnavailable", max_unavailable)
        rolling.setdefault("maxSurge", max_surge)


def _no_active_deadline(spec: Obj, kind_word: str) -> list[Cause]:
    """A controller's pods run until replaced: their template may not set a deadline."""
    deadline = get_path(spec, ("template", "spec", "activeDeadlineSeconds"))
    if deadline is None:
        return []
    return [
        v.invalid(
            "spec.template.spec.activeDeadlineSeconds",
            deadline,
            f"activeDeadlineSeconds in {kind_word} is not Supported",
        )
    ]


def _replica_set_template_causes(spec: Obj, kind_word: str) -> list[Cause]:
    """`ValidatePodTemplateSpecForReplicaSet`: labels match, pod template, Always, no deadline."""
    causes = c.template_labels_cause(spec, "spec") + c.template_causes(spec)
    causes += c.restart_always_causes(spec, "spec")
    return causes + _no_active_deadline(spec, kind_word)


def _validate_selector_update(new: Obj, old: Obj) -> list[Cause]:
    """Metadata rules, and apps/v1's immutable selector (Deployment, ReplicaSet, DaemonSet)."""
    return c.meta_update(new, old) + c.immutable_selector(new, old)


# --- Deployment ----------------------------------------------------------------------


def default_deployment(obj: Obj) -> None:
    """`SetDefaults_Deployment`: one replica, a 25%/25% rolling update, 10 revisions, 600 s."""
    spec = c.ensure_spec(obj)
    spec.setdefault("replicas", 1)
    _default_rolling_update(spec, "strategy", "25%", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    c.default_template(spec)


def _deployment_strategy_causes(strategy: Obj) -> list[Cause]:
    path = "spec.strategy"
    kind = strategy.get("type")
    if kind == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            return [
                v.forbidden(
                    f"{path}.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                )
            ]
        return []
    if kind != "RollingUpdate":
        return [v.not_supported(f"{path}.type", kind, ["Recreate", "RollingUpdate"])]
    rolling = strategy.get("rollingUpdate")
    if rolling is None:
        return [v.required(f"{path}.rollingUpdate", "this should be defaulted and never be nil")]
    rpath = f"{path}.rollingUpdate"
    unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    causes = c.positive_int_or_percent(f"{rpath}.maxUnavailable", unavailable)
    causes += c.positive_int_or_percent(f"{rpath}.maxSurge", surge)
    if c.int_or_percent_value(unavailable)[0] == 0 and c.int_or_percent_value(surge)[0] == 0:
        causes.append(
            c.invalid_go(
                f"{rpath}.maxUnavailable",
                c.go_int_or_string(unavailable),
                "may not be 0 when `maxSurge` is 0",
            )
        )
    return causes + c.not_more_than_100_percent(f"{rpath}.maxUnavailable", unavailable)


def validate_deployment(obj: Obj) -> list[Cause]:
    """`ValidateDeployment`."""
    spec = obj.get("spec") or {}
    causes = v.validate_object_meta(obj, True, v.name_is_dns_subdomain)
    causes += c.non_negative_fields(spec, "spec", "replicas")
    causes += c.selector_causes(spec, "spec", "deployment")
    causes += _replica_set_template_causes(spec, "ReplicaSet")
    causes += _deployment_strategy_causes(spec.get("strategy") or {})
    causes += c.non_negative_fields(spec, "spec", "minReadySeconds", "revisionHistoryLimit")
    deadline = spec.get("progressDeadlineSeconds")
    if isinstance(deadline, int):
        causes += v.non_negative("spec.progressDeadlineSeconds", deadline)
        if deadline <= (spec.get("minReadySeconds") or 0):
            causes.append(
                v.invalid(
                    "spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"
                )
            )
    return causes


def deployment_row(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        *c.template_cells(obj),
    ]


DEPLOYMENT = Kind(
    group="apps",
    version="v1",
    kind="Deployment",
    plural="deployments",
    namespaced=True,
    short_names=("deploy",),
    categories=("all",),
    subresources=("status", "scale"),
    has_status=True,
    defaults=default_deployment,
    validate=validate_deployment,
    validate_update=_validate_selector_update,
    columns=(
        _READY,
        Column(
            "Up-to-date",
            description="Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
        ),
        Column(
            "Available",
            description="Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
        ),
        *_TEMPLATE_COLUMNS,
    ),
    row=deployment_row,
    scale=Scale(),
    schema_name="io.k8s.api.apps.v1.Deployment",
)


# --- ReplicaSet ----------------------------------------------------------------------


def default_replica_set(obj: Obj) -> None:
    spec = c.ensure_spec(obj)
    spec.setdefault("replicas", 1)
    c.default_template(spec)


def validate_replica_set(obj: Obj) -> list[Cause]:
    """`ValidateReplicaSet` (its empty-selector message says "deployment", as upstream's does)."""
    spec = obj.get("spec") or {}
    causes = v.validate_object_meta(obj, True, v.name_is_dns_subdomain)
    causes += c.non_negative_fields(spec, "spec", "replicas", "minReadySeconds")
    causes += c.selector_causes(spec, "spec", "deployment")
    return causes + _replica_set_template_causes(spec, "ReplicaSet")


def replica_set_row(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        *c.template_cells(obj),
    ]


REPLICA_SET = Kind(
    group="apps",
    version="v1",
    kind="ReplicaSet",
    plural="replicasets",
    namespaced=True,
    short_names=("rs",),
    categories=("all",),
    subresources=("status", "scale"),
    has_status=True,
    defaults=default_replica_set,
    validate=validate_replica_set,
    validate_update=_validate_selector_update,
    columns=(
        Column("Desired", "integer", description="Replicas is the number of desired pods."),
        Column(
            "Current",
            "integer",
            description="Replicas is the most recently observed number of replicas.",
        ),
        Column(
            "Ready", "integer", description="The number of ready replicas for this replica set."
        ),
        *_TEMPLATE_COLUMNS,
    ),
    row=replica_set_row,
    scale=Scale(),
    schema_name="io.k8s.api.apps.v1.ReplicaSet",
)


# --- DaemonSet -----------------------------------------------------------------------


def default_daemon_set(obj: Obj) -> None:
    """`SetDefaults_DaemonSet`: rolling update, one unavailable at a time, no surge."""
    spec = c.ensure_spec(obj)
    _default_rolling_update(spec, "updateStrategy", 1, 0)
    spec.setdefault("revisionHistoryLimit", 10)
    c.default_template(spec)


def _daemon_set_strategy_causes(strategy: Obj) -> list[Cause]:
    path = "spec.updateStrategy"
    kind = strategy.get("type")
    if kind == "OnDelete":
        return []
    if kind != "RollingUpdate":
        return [v.not_supported(f"{path}.type", kind, ["RollingUpdate", "OnDelete"])]
    rolling = strategy.get("rollingUpdate")
    if rolling is None:
        return [v.required(f"{path}.rollingUpdate")]
    rpath = f"{path}.rollingUpdate"
    mu, ms = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    causes = c.positive_int_or_percent(f"{rpath}.maxUnavailable", mu)
    causes += c.positive_int_or_percent(f"{rpath}.maxSurge", ms)
    causes += c.not_more_than_100_percent(f"{rpath}.maxUnavailable", mu)
    causes += c.not_more_than_100_percent(f"{rpath}.maxSurge", ms)
    has_unavailable = c.int_or_percent_value(mu)[0] != 0
    has_surge = c.int_or_percent_value(ms)[0] != 0
    if has_unavailable and has_surge:
        causes.append(
            c.invalid_go(
                f"{rpath}.maxSurge",
                c.go_int_or_string(ms),
                "may not be set when maxUnavailable is non-zero",
            )
        )
    elif not has_unavailable and not has_surge:
        causes.append(v.required(f"{rpath}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    return causes


def validate_daemon_set(obj: Obj) -> list[Cause]:
    """`ValidateDaemonSet`."""
    spec = obj.get("spec") or {}
    causes = v.validate_object_meta(obj, True, v.name_is_dns_subdomain)
    sel = spec.get("selector")
    if sel is not None:
        causes += v.label_selector_causes(sel, "spec.selector")
    if "selector" in spec or "template" in spec:
        labels = get_path(spec, ("template", "metadata", "labels"))
        if not c.selector_matches(sel, labels):
            causes.append(
                c.invalid_go(
                    "spec.template.metadata.labels", c.go_string_map(labels), c.SELECTOR_MISMATCH
                )
            )
    if c.selector_is_empty(sel):
        causes.append(
            c.invalid_go(
                "spec.selector", c.go_label_selector(sel), "empty selector is invalid for daemonset"
            )
        )
    causes += c.template_causes(spec)
    causes += c.restart_always_causes(spec, "spec")
    causes += _no_active_deadline(spec, "DaemonSet")
    causes += c.non_negative_fields(spec, "spec", "minReadySeconds", "templateGeneration")
    causes += _daemon_set_strategy_causes(spec.get("updateStrategy") or {})
    return causes + c.non_negative_fields(spec, "spec", "revisionHistoryLimit")


def daemon_set_row(obj: Obj) -> list[Any]:
    status = obj.get("status") or {}
    pod_spec = get_path(obj, ("spec", "template", "spec"))
    return [
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        c.label_set_string((pod_spec or {}).get("nodeSelector")),
        *c.template_cells(obj),
    ]


DAEMON_SET = Kind(
    group="apps",
    version="v1",
    kind="DaemonSet",
    plural="daemonsets",
    namespaced=True,
    short_names=("ds",),
    categories=("all",),
    subresources=("status",),
    has_status=True,
    defaults=default_daemon_set,
    validate=validate_daemon_set,
    validate_update=_validate_selector_update,
    columns=(
        Column(
            "Desired",
            "integer",
            description="The total number of nodes that should be running the daemon pod.",
        ),
        Column(
            "Current",
            "integer",
            description="The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
        ),
        Column(
            "Ready",
            "integer",
            description="The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
        ),
        Column(
            "Up-to-date",
            "integer",
            description="The total number of nodes that are running updated daemon pod",
        ),
        Column(
            "Available",
            "integer",
            description="The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
        ),
        Column(
            "Node Selector",
            description="NodeSelector is a selector which must be true for the pod to fit on a node.",
        ),
        *_TEMPLATE_COLUMNS,
    ),
    row=daemon_set_row,
    schema_name="io.k8s.api.apps.v1.DaemonSet",
)


# --- ControllerRevision --------------------------------------------------------------


def validate_controller_revision(obj: Obj) -> list[Cause]:
    causes = v.validate_object_meta(obj, True, v.name_is_dns_subdomain)
    if obj.get("data") is None:
        causes.append(v.required("data", "data is mandatory"))
    return causes + v.non_negative("revision", obj.get("revision"))


def validate_controller_revision_update(new: Obj, old: Obj) -> list[Cause]:
    causes = c.meta_update(new, old)
    if new.get("data") != old.get("data"):
        causes.append(v.invalid("data", new.get("data"), "field is immutable"))
    return causes


def controller_revision_row(obj: Obj) -> list[Any]:
    """CONTROLLER is `kind.group/name` of the controlling owner, lower-cased, or `<none>`."""
    ref = c.controller_of(obj)
    controller = "<none>"
    if ref is not None:
        api_version = ref.get("apiVersion", "")
        group = api_version.split("/")[0] if "/" in api_version else ""
        group_kind = f"{ref.get('kind', '')}.{group}" if group else ref.get("kind", "")
        controller = (
            f"{group_kind.lower()}/{ref.get('name', '')}"
            if ref.get("kind")
            else ref.get("name", "")
        )
    return [controller, obj.get("revision", 0), c.creation_age(obj)]


CONTROLLER_REVISION = Kind(
    group="apps",
    version="v1",
    kind="ControllerRevision",
    plural="controllerrevisions",
    namespaced=True,
    validate=validate_controller_revision,
    validate_update=validate_controller_revision_update,
    columns=(
        Column("Controller", description="Controller of the object"),
        Column(
            "Revision",
            description="Revision indicates the revision of the state represented by Data.",
        ),
        c.AGE,
    ),
    row=controller_revision_row,
    schema_name="io.k8s.api.apps.v1.ControllerRevision",
)

STATEFUL_SET = apps_statefulset.STATEFUL_SET

KINDS: tuple[Kind, ...] = (DEPLOYMENT, REPLICA_SET, STATEFUL_SET, DAEMON_SET, CONTROLLER_REVISION)
