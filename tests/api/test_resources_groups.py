"""The smaller groups' declarations: HPA defaults, validation and TARGETS; EndpointSlice,
Lease, StorageClass, PodDisruptionBudget, PriorityClass, events.k8s.io Event,
RBAC and CRD rules and cells; discovery names of every kind."""

import copy
from typing import Any

from nanokube.api.meta import parse_time
from nanokube.api.resources import groups, groups_crd, groups_events, groups_rbac
from nanokube.api.resources import groups_autoscaling as hpa_mod

Obj = dict[str, Any]
KINDS = {k.kind: k for k in groups.KINDS}


def messages(causes: list[Any]) -> list[str]:
    return [f"{c.field}: {c.message}" for c in causes]


def ns_meta(name: str = "x") -> Obj:
    return {"name": name, "namespace": "default"}


# --- HorizontalPodAutoscaler ---------------------------------------------------------


def hpa(**spec: Any) -> Obj:
    return {
        "metadata": ns_meta("web"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 5,
            **spec,
        },
    }


def test_hpa_defaults() -> None:
    h = hpa()
    hpa_mod.default_hpa(h)
    assert h["spec"]["minReplicas"] == 1
    assert h["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80},
            },
        }
    ]
    assert "behavior" not in h["spec"]  # behavior defaults only fill a behavior that was given


def test_hpa_behavior_defaults() -> None:
    h = hpa(behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    hpa_mod.default_hpa(h)
    assert h["spec"]["behavior"] == {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 60,
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        },
    }
    assert KINDS["HorizontalPodAutoscaler"].validate(h) == []


def test_hpa_validation() -> None:
    h = hpa(minReplicas=6, maxReplicas=5)
    h["spec"]["scaleTargetRef"]["name"] = ""
    h["spec"]["metrics"] = [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}
    ]
    assert messages(KINDS["HorizontalPodAutoscaler"].validate(h)) == [
        "spec.maxReplicas: Invalid value: 5: must be greater than or equal to `minReplicas`",
        "spec.scaleTargetRef.name: Required value",
        "spec.metrics[0].resource.target.averageUtilization: Required value: "
        "must set either a target raw value or a target utilization",
    ]
    h = hpa(
        minReplicas=0,
        behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 15}]}},
    )
    assert messages(KINDS["HorizontalPodAutoscaler"].validate(h)) == [
        "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
        "spec.behavior.scaleUp.policies[0].value: Invalid value: 0: must be greater than zero",
    ]


def test_hpa_targets_and_row() -> None:
    h = hpa()
    hpa_mod.default_hpa(h)
    assert hpa_mod.hpa_targets(h) == "cpu: <unknown>/80%"
    h["status"] = {
        "currentReplicas": 2,
        "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 50}}}
        ],
    }
    assert KINDS["HorizontalPodAutoscaler"].row(h)[:5] == [
        "Deployment/web",
        "cpu: 50%/80%",
        "1",
        5,
        2,
    ]
    h["spec"]["metrics"] += [
        {
            "type": "Resource",
            "resource": {
                "name": "memory",
                "target": {"type": "AverageValue", "averageValue": "100Mi"},
            },
        },
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "qps"},
                "target": {"type": "AverageValue", "averageValue": "10"},
            },
        },
    ]
    assert hpa_mod.hpa_targets(h) == "cpu: 50%/80%, memory: <unknown>/100Mi + 1 more..."
    assert hpa_mod.hpa_targets({"spec": {}}) == "<none>"


# --- EndpointSlice -------------------------------------------------------------------


def slice_(address_type: str = "IPv4", addresses: list[str] | None = None) -> Obj:
    return {
        "metadata": ns_meta("web-abc"),
        "addressType": address_type,
        "endpoints": [{"addresses": addresses or ["10.42.0.5"]}],
        "ports": [{"port": 80}],
    }


def test_endpoint_slice_defaults_validation_and_row() -> None:
    es = slice_()
    es["endpoints"].append({"addresses": ["10.42.0.6"]})
    kind = KINDS["EndpointSlice"]
    kind.defaults(es)
    assert es["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]
    assert kind.validate(es) == []
    assert kind.row(es)[:3] == ["IPv4", "80", "10.42.0.5,10.42.0.6"]
    many = slice_(addresses=["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"])
    many["ports"] = []
    assert kind.row(many)[1:3] == ["<unset>", "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."]


def test_endpoint_slice_rules() -> None:
    kind = KINDS["EndpointSlice"]
    bad = slice_(addresses=["10.0.0.300", "127.0.0.1"])
    bad["ports"] = [{"name": "http", "protocol": "ICMP"}]
    assert messages(kind.validate(bad)) == [
        'endpoints[0].addresses[0]: Invalid value: "10.0.0.300": must be a valid IPv4 address',
        'endpoints[0].addresses[1]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)',
        'ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"',
    ]
    new = copy.deepcopy(slice_())
    new["addressType"] = "IPv6"
    assert [c.field for c in kind.validate_update(new, slice_())] == ["addressType"]


# --- Lease, StorageClass, PDB, PriorityClass -----------------------------------------


def test_lease() -> None:
    lease = {
        "metadata": ns_meta("node-1"),
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 0},
    }
    kind = KINDS["Lease"]
    assert messages(kind.validate(lease)) == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"
    ]
    assert kind.row(lease)[0] == "node-1"
    assert not kind.has_status


def test_storage_class() -> None:
    kind = KINDS["StorageClass"]
    sc: Obj = {
        "metadata": {
            "name": "local-path",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "rancher.io/local-path",
    }
    kind.defaults(sc)
    assert (sc["reclaimPolicy"], sc["volumeBindingMode"]) == ("Delete", "Immediate")
    assert kind.validate(sc) == []
    assert kind.row(sc)[:5] == [
        "local-path (default)",
        "rancher.io/local-path",
        "Delete",
        "Immediate",
        False,
    ]
    assert kind.columns[0].format == "name" and kind.short_names == ("sc",)
    new = copy.deepcopy(sc)
    new["provisioner"] = "other.io/x"
    assert messages(kind.validate_update(new, sc)) == [
        "provisioner: Forbidden: updates to provisioner are forbidden."
    ]


def test_pod_disruption_budget() -> None:
    kind = KINDS["PodDisruptionBudget"]
    pdb: Obj = {
        "metadata": ns_meta("web"),
        "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}},
    }
    assert kind.validate(pdb) == []
    pdb["status"] = {"disruptionsAllowed": 1}
    assert kind.row(pdb)[:3] == ["50%", "N/A", 1]
    pdb["spec"]["maxUnavailable"] = 1
    assert messages(kind.validate(pdb))[0].endswith(
        "minAvailable and maxUnavailable cannot be both set"
    )
    assert kind.short_names == ("pdb",)


def test_priority_class() -> None:
    kind = KINDS["PriorityClass"]
    pc: Obj = {"metadata": {"name": "high"}, "value": 1000}
    kind.defaults(pc)
    assert pc["preemptionPolicy"] == "PreemptLowerPriority"
    assert kind.validate(pc) == []
    assert kind.row(pc)[:2] == [1000, False] and kind.row(pc)[3] == "PreemptLowerPriority"
    pc["value"] = 2_000_000_000
    assert messages(kind.validate(pc)) == [
        "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
    ]
    sys_pc: Obj = {"metadata": {"name": "system-mine"}, "value": 1}
    assert messages(kind.validate(sys_pc)) == [
        "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. "
        "error: system-mine is not a known system priority class"
    ]
    new = dict(pc, value=5)
    assert messages(kind.validate_update(new, pc)) == [
        "value: Forbidden: may not be changed in an update."
    ]


# --- events.k8s.io Event -------------------------------------------------------------


def test_events_k8s_io_event() -> None:
    kind = KINDS["Event"]
    assert kind.group == "events.k8s.io" and kind.plural == "events" and kind.short_names == ("ev",)
    ev: Obj = {
        "metadata": ns_meta("web.1"),
        "eventTime": "2024-01-01T00:00:00.000000Z",
        "reportingController": "nanokube.io/scheduler",
        "reportingInstance": "node-1",
        "action": "Binding",
        "reason": "Scheduled",
        "type": "Normal",
        "note": "Successfully assigned default/web to node-1 ",
        "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
    }
    assert kind.validate(ev) == []
    row = groups_events.event_row(ev, now=parse_time("2024-01-01T00:00:30Z"))
    assert row == [
        "30s",
        "Normal",
        "Scheduled",
        "pod/web",
        "",
        "nanokube.io/scheduler, node-1",
        "Successfully assigned default/web to node-1",
        "30s",
        1,
        "web.1",
    ]
    bad = dict(ev, type="Odd", action="", deprecatedCount=3)
    assert messages(kind.validate(bad)) == [
        "action: Required value",
        'type: Invalid value: "": has invalid value: Odd',
        'count: Invalid value: "": needs to be unset',
    ]
    assert kind.field_selectors["regarding.name"](ev) == "web"


# --- RBAC ----------------------------------------------------------------------------


def test_role_rules() -> None:
    role: Obj = {
        "metadata": ns_meta("reader"),
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": []},  # absent: the schema's cause
            {"verbs": ["get"]},
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
        ],
    }
    assert messages(groups_rbac.ROLE.validate(role)) == [
        "rules[1].verbs: Required value: verbs must contain at least one value",
        "rules[2].apiGroups: Required value: resource rules must supply at least one api group",
        "rules[2].resources: Required value: resource rules must supply at least one resource",
        'rules[3].nonResourceURLs: Invalid value: []string{"/healthz"}: namespaced rules cannot apply to non-resource URLs',
    ]
    cluster_role = {"metadata": {"name": "health"}, "rules": [role["rules"][3]]}
    assert groups_rbac.CLUSTER_ROLE.validate(cluster_role) == []
    role["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    assert groups_rbac.ROLE.row(role) == ["2024-01-01T00:00:00Z"]
    assert [(c.name, c.type) for c in groups_rbac.ROLE.columns] == [("Created At", "date")]


def test_bindings() -> None:
    rb: Obj = {
        "metadata": ns_meta("read"),
        "roleRef": {"kind": "Role", "name": "reader"},
        "subjects": [
            {"kind": "User", "name": "ann"},
            {"kind": "ServiceAccount", "name": "bot", "namespace": "default"},
            {"kind": "Group", "name": "devs"},
        ],
    }
    groups_rbac.ROLE_BINDING.defaults(rb)
    assert rb["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert (
        rb["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io"
        and rb["subjects"][1]["apiGroup"] == ""
    )
    assert groups_rbac.ROLE_BINDING.validate(rb) == []
    assert groups_rbac.ROLE_BINDING.row(rb)[0] == "Role/reader"
    assert groups_rbac.ROLE_BINDING.row(rb)[2:] == ["ann", "devs", "default/bot"]
    crb = copy.deepcopy(rb)
    crb["metadata"] = {"name": "read"}
    crb["subjects"][1].pop("namespace")
    assert messages(groups_rbac.CLUSTER_ROLE_BINDING.validate(crb)) == [
        'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"',
        "subjects[1].namespace: Required value",
    ]
    new = copy.deepcopy(rb)
    new["roleRef"]["name"] = "writer"
    assert messages(groups_rbac.ROLE_BINDING.validate_update(new, rb)) == [
        'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"Role", Name:"writer"}: '
        "cannot change roleRef"
    ]


# --- CustomResourceDefinition --------------------------------------------------------


def crd(name: str = "widgets.example.com", storage: tuple[bool, ...] = (True,)) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [
                {
                    "name": f"v{i + 1}",
                    "served": True,
                    "storage": s,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
                for i, s in enumerate(storage)
            ],
        },
    }


def test_crd_defaults_and_create() -> None:
    c = crd()
    groups_crd.CUSTOM_RESOURCE_DEFINITION.defaults(c)
    assert c["spec"]["names"] == {
        "plural": "widgets",
        "kind": "Widget",
        "singular": "widget",
        "listKind": "WidgetList",
    }
    assert c["spec"]["conversion"] == {"strategy": "None"}
    assert groups_crd.CUSTOM_RESOURCE_DEFINITION.validate(c) == []
    groups_crd.CUSTOM_RESOURCE_DEFINITION.prepare_create(c)
    assert c["status"]["storedVersions"] == ["v1"]


def test_crd_rules() -> None:
    kind = groups_crd.CUSTOM_RESOURCE_DEFINITION
    c = crd(name="widgets.other.com", storage=(True, True))
    c["spec"]["scope"] = "Global"
    kind.defaults(c)
    msgs = messages(kind.validate(c))
    assert (
        msgs[0]
        == 'metadata.name: Invalid value: "widgets.other.com": must be spec.names.plural+"."+spec.group'
    )
    assert (
        msgs[1]
        == 'spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced"'
    )
    assert msgs[2].startswith("spec.versions: Invalid value: ")
    assert msgs[2].endswith("must have exactly one version marked as storage version")
    new, old = crd(), crd()
    new["spec"]["group"] = "example.org"
    assert [c.field for c in kind.validate_update(new, old)] == ["spec.group"]
    assert kind.short_names == ("crd", "crds")


def test_discovery_names() -> None:
    expect = {
        "HorizontalPodAutoscaler": (
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            True,
            ("hpa",),
            ("all",),
        ),
        "EndpointSlice": ("discovery.k8s.io", "v1", "endpointslices", True, (), ()),
        "Lease": ("coordination.k8s.io", "v1", "leases", True, (), ()),
        "StorageClass": ("storage.k8s.io", "v1", "storageclasses", False, ("sc",), ()),
        "PodDisruptionBudget": ("policy", "v1", "poddisruptionbudgets", True, ("pdb",), ()),
        "PriorityClass": ("scheduling.k8s.io", "v1", "priorityclasses", False, ("pc",), ()),
        "Event": ("events.k8s.io", "v1", "events", True, ("ev",), ()),
        "Role": ("rbac.authorization.k8s.io", "v1", "roles", True, (), ()),
        "ClusterRole": ("rbac.authorization.k8s.io", "v1", "clusterroles", False, (), ()),
        "RoleBinding": ("rbac.authorization.k8s.io", "v1", "rolebindings", True, (), ()),
        "ClusterRoleBinding": (
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            False,
            (),
            (),
        ),
        "CustomResourceDefinition": (
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            False,
            ("crd", "crds"),
            ("api-extensions",),
        ),
    }
    got = {
        k: (v.group, v.version, v.plural, v.namespaced, v.short_names, v.categories)
        for k, v in KINDS.items()
    }
    assert got == expect
