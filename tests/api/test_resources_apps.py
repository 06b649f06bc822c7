"""apps/v1 declarations: defaults, upstream validation messages, immutability on
update, table cells, scale and discovery names."""

import copy
from typing import Any

from nanokube.api.errors import invalid
from nanokube.api.resources import apps, apps_common

Obj = dict[str, Any]


def template(labels: dict[str, str] | None) -> Obj:
    tpl: Obj = {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}
    if labels is not None:
        tpl["metadata"] = {"labels": labels}
    return tpl


def workload(kind: str, selector: Obj | None = None, labels: dict[str, str] | None = None) -> Obj:
    spec: Obj = {"template": template({"app": "web"} if labels is None else labels)}
    spec["selector"] = {"matchLabels": {"app": "web"}} if selector is None else selector
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {
            "name": "web",
            "namespace": "default",
            "creationTimestamp": "2020-01-01T00:00:00Z",
        },
        "spec": spec,
    }


def messages(causes: list[Any]) -> list[str]:
    return [f"{c.field}: {c.message}" for c in causes]


def checked(kind: Any, obj: Obj) -> list[str]:
    kind.defaults(obj)
    return messages(kind.validate(obj))


# --- Deployment ----------------------------------------------------------------------


def test_deployment_defaults() -> None:
    d = workload("Deployment")
    apps.DEPLOYMENT.defaults(d)
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["template"]["spec"]["restartPolicy"] == "Always"  # the pod template's defaults


def test_deployment_defaults_keep_what_is_set() -> None:
    d = workload("Deployment")
    d["spec"].update(replicas=0, strategy={"type": "Recreate"})
    apps.DEPLOYMENT.defaults(d)
    assert d["spec"]["replicas"] == 0
    assert d["spec"]["strategy"] == {"type": "Recreate"}


def test_valid_deployment_has_no_causes() -> None:
    assert checked(apps.DEPLOYMENT, workload("Deployment")) == []


def test_selector_not_matching_template_has_upstream_message() -> None:
    d = workload(
        "Deployment", selector={"matchLabels": {"app": "x"}}, labels={"app": "y", "tier": "db"}
    )
    assert checked(apps.DEPLOYMENT, d) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"y", "tier":"db"}: '
        "`selector` does not match template `labels`"
    ]
    d = workload("Deployment", selector={"matchLabels": {"app": "x"}}, labels={"app": "y"})
    apps.DEPLOYMENT.defaults(d)
    err = invalid("Deployment", "web", apps.DEPLOYMENT.validate(d), "apps")
    assert err.message == (
        'Deployment.apps "web" is invalid: spec.template.metadata.labels: Invalid value: '
        'map[string]string{"app":"y"}: `selector` does not match template `labels`'
    )


def test_empty_selector_and_missing_labels() -> None:
    d = workload("Deployment", selector={})
    assert checked(apps.DEPLOYMENT, d) == [
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
    ]
    d = workload("Deployment")
    del d["spec"]["template"]["metadata"]
    assert checked(apps.DEPLOYMENT, d) == [
        "spec.template.metadata.labels: Invalid value: map[string]string(nil): "
        "`selector` does not match template `labels`"
    ]


def test_match_expressions_select_template() -> None:
    sel = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}
    assert checked(apps.DEPLOYMENT, workload("Deployment", selector=sel)) == []


def test_negative_replicas_and_restart_policy() -> None:
    d = workload("Deployment")
    d["spec"]["replicas"] = -1
    d["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert checked(apps.DEPLOYMENT, d) == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"',
    ]


def test_rolling_update_may_not_be_zero_zero() -> None:
    d = workload("Deployment")
    d["spec"]["strategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"},
    }
    assert checked(apps.DEPLOYMENT, d) == [
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:"0%"}: '
        "may not be 0 when `maxSurge` is 0"
    ]


def test_bad_percent_and_over_100() -> None:
    d = workload("Deployment")
    d["spec"]["strategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "x", "maxUnavailable": "150%"},
    }
    msgs = checked(apps.DEPLOYMENT, d)
    assert msgs[0].startswith(
        'spec.strategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:"x"}: '
        "a valid percent string must be a numeric string followed by an ending '%'"
    )
    assert msgs[1] == (
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "
        'intstr.IntOrString{Type:1, IntVal:0, StrVal:"150%"}: must not be greater than 100%'
    )


def test_recreate_forbids_rolling_update_and_deadline_rule() -> None:
    d = workload("Deployment")
    d["spec"].update(strategy={"type": "Recreate", "rollingUpdate": {}}, minReadySeconds=700)
    assert checked(apps.DEPLOYMENT, d) == [
        "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
        "spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds",
    ]


def test_selector_is_immutable_on_update() -> None:
    old = workload("Deployment")
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "v": "2"}}
    assert messages(apps.DEPLOYMENT.validate_update(new, old)) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "v":"2"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
    ]
    same = copy.deepcopy(old)
    same["spec"]["replicas"] = 5
    assert apps.DEPLOYMENT.validate_update(same, old) == []


def test_deployment_row_and_kind() -> None:
    d = workload(
        "Deployment",
        selector={"matchLabels": {"app": "web", "a": "b"}},
        labels={"app": "web", "a": "b"},
    )
    d["spec"]["replicas"] = 3
    d["spec"]["template"]["spec"]["containers"].append({"name": "log", "image": "busybox"})
    d["status"] = {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    row = apps.DEPLOYMENT.row(d)
    assert row[:3] == ["2/3", 3, 2]
    assert row[3].endswith("d") or row[3].endswith("y")  # an age in days or years
    assert row[4:] == ["web,log", "nginx:1.27,busybox", "a=b,app=web"]
    assert [c.name for c in apps.DEPLOYMENT.columns] == [
        "Ready",
        "Up-to-date",
        "Available",
        "Age",
        "Containers",
        "Images",
        "Selector",
    ]
    assert [c.priority for c in apps.DEPLOYMENT.columns][4:] == [1, 1, 1]
    k = apps.DEPLOYMENT
    assert (k.short_names, k.categories, k.subresources, k.has_status) == (
        ("deploy",),
        ("all",),
        ("status", "scale"),
        True,
    )
    assert k.scale is not None and k.scale.spec_replicas == ("spec", "replicas")


# --- ReplicaSet ----------------------------------------------------------------------


def test_replica_set() -> None:
    rs = workload("ReplicaSet")
    assert checked(apps.REPLICA_SET, rs) == []
    assert rs["spec"]["replicas"] == 1
    rs["status"] = {"replicas": 1, "readyReplicas": 0}
    assert apps.REPLICA_SET.row(rs)[:3] == [1, 1, 0]
    assert apps.REPLICA_SET.short_names == ("rs",) and apps.REPLICA_SET.scale is not None
    assert checked(apps.REPLICA_SET, workload("ReplicaSet", selector={}))[0].endswith(
        "empty selector is invalid for deployment"  # sic, as upstream
    )


# --- StatefulSet ---------------------------------------------------------------------


def test_stateful_set_defaults() -> None:
    s = workload("StatefulSet")
    s["spec"]["volumeClaimTemplates"] = [
        {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
    ]
    apps.STATEFUL_SET.defaults(s)
    spec = s["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    assert (spec["replicas"], spec["revisionHistoryLimit"]) == (1, 10)
    claim = spec["volumeClaimTemplates"][0]
    assert claim["spec"]["volumeMode"] == "Filesystem" and claim["status"] == {"phase": "Pending"}
    assert apps.STATEFUL_SET.validate(s) == []


def test_stateful_set_rules() -> None:
    s = workload("StatefulSet")
    s["metadata"]["name"] = "web.v1"  # a subdomain, not a label
    s["spec"].update(
        podManagementPolicy="Sometimes",
        persistentVolumeClaimRetentionPolicy={"whenDeleted": "Keep"},
    )
    msgs = checked(apps.STATEFUL_SET, s)
    assert msgs[0].startswith('metadata.name: Invalid value: "web.v1": a lowercase RFC 1123 label')
    assert (
        "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'"
        in msgs
    )
    assert (
        'spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: "Keep": '
        'supported values: "Retain", "Delete"'
    ) in msgs


def test_stateful_set_update_may_change_only_listed_fields() -> None:
    old = workload("StatefulSet")
    apps.STATEFUL_SET.defaults(old)
    new = copy.deepcopy(old)
    new["spec"].update(replicas=4, minReadySeconds=5, ordinals={"start": 1})
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
    assert apps.STATEFUL_SET.validate_update(new, old) == []
    new["spec"]["serviceName"] = "other"
    assert messages(apps.STATEFUL_SET.validate_update(new, old)) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', "
        "'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' "
        "and 'minReadySeconds' are forbidden"
    ]


def test_stateful_set_row() -> None:
    s = workload("StatefulSet")
    apps.STATEFUL_SET.defaults(s)
    s["status"] = {"readyReplicas": 1}
    row = apps.STATEFUL_SET.row(s)
    assert (row[0], row[2], row[3]) == ("1/1", "web", "nginx:1.27")
    assert [c.name for c in apps.STATEFUL_SET.columns] == ["Ready", "Age", "Containers", "Images"]


# --- DaemonSet -----------------------------------------------------------------------


def test_daemon_set_defaults_and_validation() -> None:
    ds = workload("DaemonSet")
    assert checked(apps.DAEMON_SET, ds) == []
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    assert ds["spec"]["revisionHistoryLimit"] == 10
    ds["spec"]["updateStrategy"]["rollingUpdate"] = {"maxUnavailable": 1, "maxSurge": 1}
    assert messages(apps.DAEMON_SET.validate(ds)) == [
        'spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:0, IntVal:1, StrVal:""}: '
        "may not be set when maxUnavailable is non-zero"
    ]
    ds["spec"]["updateStrategy"]["rollingUpdate"] = {"maxUnavailable": 0, "maxSurge": 0}
    assert messages(apps.DAEMON_SET.validate(ds)) == [
        "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
    ]


def test_daemon_set_row() -> None:
    ds = workload("DaemonSet")
    apps.DAEMON_SET.defaults(ds)
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"zone": "a", "disk": "ssd"}
    ds["status"] = {
        "desiredNumberScheduled": 3,
        "currentNumberScheduled": 3,
        "numberReady": 2,
        "updatedNumberScheduled": 3,
        "numberAvailable": 2,
    }
    row = apps.DAEMON_SET.row(ds)
    assert row[:6] == [3, 3, 2, 3, 2, "disk=ssd,zone=a"]
    assert row[7:] == ["web", "nginx:1.27", "app=web"]
    assert apps_common.label_set_string(None) == "<none>"


# --- ControllerRevision --------------------------------------------------------------


def test_controller_revision() -> None:
    rev: Obj = {
        "metadata": {
            "name": "web-7d9f",
            "namespace": "default",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": "web",
                    "uid": "u",
                    "controller": True,
                }
            ],
        },
        "revision": 2,
        "data": {"spec": {}},
    }
    assert apps.CONTROLLER_REVISION.validate(rev) == []
    assert apps.CONTROLLER_REVISION.row(rev)[:2] == ["statefulset.apps/web", 2]
    del rev["data"]
    assert messages(apps.CONTROLLER_REVISION.validate(rev)) == [
        "data: Required value: data is mandatory"
    ]
    rev["metadata"]["ownerReferences"] = []
    assert apps.CONTROLLER_REVISION.row(rev)[0] == "<none>"


def test_selector_strings() -> None:
    sel = {
        "matchLabels": {"tier": "db"},
        "matchExpressions": [
            {"key": "env", "operator": "NotIn", "values": ["prod", "dev"]},
            {"key": "gpu", "operator": "Exists"},
            {"key": "arm", "operator": "DoesNotExist"},
        ],
    }
    assert apps_common.selector_string(sel) == "!arm,env notin (dev,prod),gpu,tier=db"
