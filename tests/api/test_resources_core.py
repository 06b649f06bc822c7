"""The core/v1 declarations: names, scopes and discovery data; each kind's defaults,
prepare_create, validation (upstream messages), update rules, table rows and field
selectors."""

import copy
from typing import Any

import pytest

from nanokube.api.kinds import Kind, Registry
from nanokube.api.meta import now_rfc3339
from nanokube.api.resources.core import KINDS

Obj = dict[str, Any]
BY_KIND = {k.kind: k for k in KINDS}


def create(kind: str, obj: Obj) -> tuple[Obj, list[str]]:
    """What the server does on a create: defaults, prepare_create, validate."""
    k = BY_KIND[kind]
    obj = copy.deepcopy(obj)
    obj.setdefault("metadata", {}).setdefault("creationTimestamp", now_rfc3339())
    k.defaults(obj)
    k.prepare_create(obj)
    return obj, [f"{c.field}: {c.message}" for c in k.validate(obj)]


def update(kind: str, old: Obj, change: Any) -> list[str]:
    k = BY_KIND[kind]
    new = copy.deepcopy(old)
    change(new)
    k.defaults(new)
    return [f"{c.field}: {c.message}" for c in k.validate_update(new, old)]


def cells(kind: str, obj: Obj) -> dict[str, Any]:
    k = BY_KIND[kind]
    row = k.row(obj)
    assert len(row) == len(k.columns)
    return {c.name: cell for c, cell in zip(k.columns, row, strict=True)}


# --- declarations ---------------------------------------------------------------------


def test_every_core_kind_is_declared_once() -> None:
    assert sorted(BY_KIND) == sorted(
        [
            "Namespace", "Pod", "Service", "Endpoints", "ConfigMap", "Secret", "Node", "Event",
            "ServiceAccount", "PersistentVolume", "PersistentVolumeClaim", "LimitRange",
            "ResourceQuota", "PodTemplate", "ReplicationController",
        ]
    )  # fmt: skip
    registry = Registry(KINDS)
    assert registry.by_resource("", "v1", "pods") is BY_KIND["Pod"]
    assert all(k.group == "" and k.version == "v1" for k in KINDS)
    assert {k.kind for k in KINDS if not k.namespaced} == {"Namespace", "Node", "PersistentVolume"}


@pytest.mark.parametrize(
    ("kind", "short", "categories"),
    [
        ("Pod", ("po",), ("all",)),
        ("Service", ("svc",), ("all",)),
        ("ReplicationController", ("rc",), ("all",)),
        ("Namespace", ("ns",), ()),
        ("ConfigMap", ("cm",), ()),
        ("Endpoints", ("ep",), ()),
        ("Node", ("no",), ()),
        ("Event", ("ev",), ()),
        ("ServiceAccount", ("sa",), ()),
        ("PersistentVolume", ("pv",), ()),
        ("PersistentVolumeClaim", ("pvc",), ()),
        ("LimitRange", ("limits",), ()),
        ("ResourceQuota", ("quota",), ()),
        ("Secret", (), ()),
    ],
)
def test_short_names_and_categories(
    kind: str, short: tuple[str, ...], categories: tuple[str, ...]
) -> None:
    assert BY_KIND[kind].short_names == short
    assert BY_KIND[kind].categories == categories


def test_subresources() -> None:
    assert set(BY_KIND["Pod"].subresources) == {
        "status", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy",
        "ephemeralcontainers",
    }  # fmt: skip
    assert BY_KIND["Service"].subresources == ("status", "proxy")
    assert BY_KIND["Node"].subresources == ("status", "proxy")
    assert BY_KIND["Namespace"].subresources == ("status", "finalize")
    assert BY_KIND["ServiceAccount"].subresources == ("token",)
    for kind in ("PersistentVolume", "PersistentVolumeClaim", "ResourceQuota"):
        assert BY_KIND[kind].subresources == ("status",)
    assert BY_KIND["Node"].status_on_create and BY_KIND["Pod"].graceful_deletion


def test_schema_names_resolve() -> None:
    from nanokube.api import schema

    for k in KINDS:
        assert k.schema_name == f"io.k8s.api.core.v1.{k.kind}"
        assert k.schema_name in schema.definitions()


def test_every_row_has_a_cell_per_column() -> None:
    empty: dict[str, Kind] = BY_KIND
    for kind, k in empty.items():
        obj = {"metadata": {"name": "x", "creationTimestamp": now_rfc3339()}}
        assert len(k.row(obj)) == len(k.columns), kind


# --- Namespace ------------------------------------------------------------------------------


def test_namespace_create() -> None:
    ns, errors = create("Namespace", {"metadata": {"name": "team-a"}})
    assert errors == []
    assert ns["status"] == {"phase": "Active"}
    assert ns["spec"] == {"finalizers": ["kubernetes"]}
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    assert cells("Namespace", ns)["Status"] == "Active"
    assert BY_KIND["Namespace"].field_selectors["status.phase"](ns) == "Active"


def test_namespace_names_are_dns_labels() -> None:
    _, errors = create("Namespace", {"metadata": {"name": "a.b"}})
    assert errors == [
        'metadata.name: Invalid value: "a.b": a lowercase RFC 1123 label must consist of lower case '
        "alphanumeric characters or '-', and must start and end with an alphanumeric character "
        "(e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    ]
    _, errors = create("Namespace", {"metadata": {"name": "x"}, "spec": {"finalizers": ["custom"]}})
    assert errors == [
        'spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name nor is it fully qualified'
    ]


def test_namespace_name_is_immutable() -> None:
    ns, _ = create("Namespace", {"metadata": {"name": "a"}})
    errors = update("Namespace", ns, lambda n: n["metadata"].update(name="b"))
    assert errors == ['metadata.name: Invalid value: "b": field is immutable']


# --- Service ------------------------------------------------------------------------------


SVC: Obj = {
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
}


def test_service_defaults() -> None:
    svc, errors = create("Service", SVC)
    assert errors == []
    assert svc["spec"] == {
        "selector": {"app": "web"},
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "internalTrafficPolicy": "Cluster",
        "ipFamilyPolicy": "SingleStack",
        "ipFamilies": ["IPv4"],
    }
    assert svc["status"] == {"loadBalancer": {}}


def test_service_validation() -> None:
    bad = copy.deepcopy(SVC)
    bad["metadata"]["name"] = "1web"
    bad["spec"]["ports"] = [{"port": 80, "nodePort": 30080}, {"port": 70000, "name": "b"}]
    bad["spec"]["type"] = "ClusterIP"
    _, errors = create("Service", bad)
    assert errors[0].startswith('metadata.name: Invalid value: "1web": a DNS-1035 label')
    assert errors[1:] == [
        "spec.ports[0].name: Required value",
        "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
        "spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
        "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
    ]
    no_ports = copy.deepcopy(SVC)
    no_ports["spec"]["ports"] = []
    assert create("Service", no_ports)[1] == ["spec.ports: Required value"]
    no_ports["spec"]["clusterIP"] = "None"
    assert create("Service", no_ports)[1] == []
    external = {"metadata": {"name": "ext", "namespace": "d"}, "spec": {"type": "ExternalName"}}
    assert create("Service", external)[1] == ["spec.externalName: Required value"]


def test_cluster_ip_is_immutable() -> None:
    svc, _ = create("Service", SVC)
    svc["spec"]["clusterIP"] = "10.43.0.12"
    svc["spec"]["clusterIPs"] = ["10.43.0.12"]
    errors = update(
        "Service",
        svc,
        lambda s: s["spec"].update(clusterIP="10.43.0.13", clusterIPs=["10.43.0.13"]),
    )
    assert errors == ['spec.clusterIPs[0]: Invalid value: ["10.43.0.13"]: may not change once set']
    assert update("Service", svc, lambda s: s["spec"]["ports"][0].update(port=8080)) == []


def test_service_update_keeps_allocated_values() -> None:
    from nanokube.api.resources.core_service import prepare_service_update

    old, _ = create("Service", SVC)
    old["spec"].update(type="NodePort", clusterIP="10.43.0.9", clusterIPs=["10.43.0.9"])
    old["spec"]["ports"][0]["nodePort"] = 30080
    new = copy.deepcopy(SVC)
    new["spec"]["type"] = "NodePort"
    BY_KIND["Service"].defaults(new)
    prepare_service_update(new, old)
    assert new["spec"]["clusterIPs"] == ["10.43.0.9"]
    assert new["spec"]["ports"][0]["nodePort"] == 30080


def test_service_rows() -> None:
    svc, _ = create("Service", SVC)
    svc["spec"]["clusterIPs"] = ["10.43.0.12"]
    row = cells("Service", svc)
    assert (row["Type"], row["Cluster-IP"], row["External-IP"], row["Port(s)"], row["Selector"]) == (
        "ClusterIP", "10.43.0.12", "<none>", "80/TCP", "app=web",
    )  # fmt: skip
    svc["spec"]["type"] = "LoadBalancer"
    svc["spec"]["ports"][0]["nodePort"] = 31000
    row = cells("Service", svc)
    assert (row["External-IP"], row["Port(s)"]) == ("<pending>", "80:31000/TCP")
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    assert cells("Service", svc)["External-IP"] == "192.0.2.1"


# --- Endpoints ------------------------------------------------------------------------------


def test_endpoints_row_and_validation() -> None:
    ep: Obj = {
        "metadata": {"name": "web", "namespace": "d"},
        "subsets": [
            {
                "addresses": [{"ip": f"10.42.0.{i}"} for i in range(1, 5)],
                "ports": [{"port": 8080}],
            }
        ],
    }
    ep, errors = create("Endpoints", ep)
    assert errors == []
    assert ep["subsets"][0]["ports"][0]["protocol"] == "TCP"
    assert (
        cells("Endpoints", ep)["Endpoints"]
        == "10.42.0.1:8080,10.42.0.2:8080,10.42.0.3:8080 + 1 more..."
    )
    assert cells("Endpoints", {"metadata": {"name": "e"}})["Endpoints"] == "<none>"
    ep["subsets"][0]["addresses"][0]["ip"] = "nope"
    [cause] = BY_KIND["Endpoints"].validate(ep)
    assert (cause.field, cause.message) == (
        "subsets[0].addresses[0].ip",
        'Invalid value: "nope": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
    )


# --- ConfigMap and Secret --------------------------------------------------------------


def test_config_map() -> None:
    cm, errors = create(
        "ConfigMap",
        {
            "metadata": {"name": "c", "namespace": "d"},
            "data": {"a": "1", "b/c": "2"},
            "binaryData": {"a": "AA=="},
        },
    )
    assert errors[0] == 'data[a]: Invalid value: "a": duplicate of key present in binaryData'
    assert errors[1].startswith(
        'data[b/c]: Invalid value: "b/c": a valid config key must consist of'
    )
    cm, _ = create(
        "ConfigMap",
        {
            "metadata": {"name": "c", "namespace": "d"},
            "data": {"a": "1"},
            "binaryData": {"b": "AA=="},
        },
    )
    assert cells("ConfigMap", cm)["Data"] == 2


def test_immutable_config_map() -> None:
    cm, _ = create(
        "ConfigMap",
        {"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1"}, "immutable": True},
    )
    assert update("ConfigMap", cm, lambda c: c["metadata"].update(labels={"x": "y"})) == []
    assert update("ConfigMap", cm, lambda c: c.update(data={"a": "2"}, immutable=False)) == [
        "immutable: Forbidden: field is immutable when `immutable` is set",
        "data: Forbidden: field is immutable when `immutable` is set",
    ]


def test_secret() -> None:
    secret, errors = create(
        "Secret",
        {
            "metadata": {"name": "s", "namespace": "d"},
            "stringData": {"user": "admin"},
            "data": {"user": "eA=="},
        },
    )
    assert errors == []
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"user": "YWRtaW4="}
    assert "stringData" not in secret
    assert cells("Secret", secret)["Type"] == "Opaque" and cells("Secret", secret)["Data"] == 1
    assert BY_KIND["Secret"].field_selectors["type"](secret) == "Opaque"
    assert update("Secret", secret, lambda s: s.update(type="kubernetes.io/basic-auth")) == [
        'type: Invalid value: "kubernetes.io/basic-auth": field is immutable',
        "data[username]: Required value",
        "data[password]: Required value",
    ]
    _, errors = create(
        "Secret",
        {
            "metadata": {"name": "t", "namespace": "d"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "eA=="},
        },
    )
    assert errors == ["data[tls.key]: Required value"]


# --- ServiceAccount -----------------------------------------------------------------------


def test_service_account() -> None:
    sa, errors = create(
        "ServiceAccount",
        {"metadata": {"name": "default", "namespace": "d"}, "secrets": [{"name": "tok"}]},
    )
    assert errors == []
    assert cells("ServiceAccount", sa)["Secrets"] == 1


# --- Node -------------------------------------------------------------------------------


def node(**status: Any) -> Obj:
    return {
        "metadata": {"name": "node-1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]},
        "status": {
            "capacity": {"cpu": "2", "memory": "4Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)"},
            **status,
        },
    }


def test_node() -> None:
    n, errors = create("Node", node())
    assert errors == []
    assert n["status"]["allocatable"] == {"cpu": "2", "memory": "4Gi"}
    row = cells("Node", n)
    assert (row["Status"], row["Roles"], row["Version"], row["Internal-IP"], row["External-IP"]) == (
        "Ready", "control-plane", "v1.33.0", "192.168.1.10", "<none>",
    )  # fmt: skip
    assert (row["OS-Image"], row["Kernel-Version"]) == (
        "Debian GNU/Linux 12 (bookworm)",
        "<unknown>",
    )
    n["spec"]["unschedulable"] = True
    n["status"]["conditions"][0]["status"] = "Unknown"
    assert cells("Node", n)["Status"] == "NotReady,SchedulingDisabled"
    assert BY_KIND["Node"].field_selectors["spec.unschedulable"](n) == "true"
    del n["status"]["conditions"]
    assert cells("Node", n)["Status"].startswith("Unknown")


def test_node_updates() -> None:
    n, _ = create("Node", node())
    assert update("Node", n, lambda x: x["spec"].update(podCIDRs=["10.42.1.0/24"])) == [
        'spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid'
    ]
    errors = update(
        "Node", n, lambda x: x["spec"].update(taints=[{"key": "k", "effect": "Sometimes"}])
    )
    assert errors == [
        'spec.taints[0].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"'
    ]


# --- Event ------------------------------------------------------------------------------


EVENT: Obj = {
    "metadata": {"name": "web.17a", "namespace": "default"},
    "involvedObject": {
        "kind": "Pod",
        "name": "web",
        "namespace": "default",
        "uid": "u1",
        "fieldPath": "spec.containers{app}",
    },
    "reason": "Pulled",
    "message": "Successfully pulled image  ",
    "type": "Normal",
    "source": {"component": "kubelet", "host": "node-1"},
    "count": 2,
}


def test_event_row_and_selectors() -> None:
    event, errors = create(
        "Event", {**EVENT, "firstTimestamp": now_rfc3339(), "lastTimestamp": now_rfc3339()}
    )
    assert errors == []
    row = cells("Event", event)
    assert [c.name for c in BY_KIND["Event"].columns if c.priority == 0] == [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Message",
    ]
    assert (row["Type"], row["Reason"], row["Object"], row["Message"]) == (
        "Normal",
        "Pulled",
        "pod/web",
        "Successfully pulled image",
    )
    assert (row["Subobject"], row["Source"], row["Count"]) == (
        "spec.containers{app}",
        "kubelet, node-1",
        2,
    )
    selectors = BY_KIND["Event"].field_selectors
    assert selectors["involvedObject.name"](event) == "web"
    assert selectors["involvedObject.uid"](event) == "u1"
    assert selectors["source"](event) == "kubelet"
    assert selectors["reason"](event) == "Pulled"


def test_event_namespace_must_match_its_object() -> None:
    _, errors = create("Event", {**EVENT, "metadata": {"name": "e", "namespace": "other"}})
    assert errors == [
        'involvedObject.namespace: Invalid value: "default": does not match event.namespace'
    ]
    _, errors = create("Event", {**EVENT, "eventTime": "2025-01-01T00:00:00.000000Z"})
    required = [e for e in errors if e.endswith("Required value")]
    assert required == [
        "reportingComponent: Required value",
        "reportingInstance: Required value",
        "action: Required value",
    ]


# --- PersistentVolume and PersistentVolumeClaim ----------------------------------------


PV: Obj = {
    "metadata": {"name": "pv1"},
    "spec": {
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
        "hostPath": {"path": "/data"},
    },
}


def test_persistent_volume() -> None:
    pv, errors = create("PersistentVolume", PV)
    assert errors == []
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["volumeMode"] == "Filesystem"
    assert pv["status"]["phase"] == "Pending"
    row = cells("PersistentVolume", pv)
    assert (row["Capacity"], row["Access Modes"], row["Reclaim Policy"], row["Status"], row["Claim"]) == (
        "1Gi", "RWO,ROX", "Retain", "Pending", "",
    )  # fmt: skip
    bad = copy.deepcopy(PV)
    bad["spec"].update(accessModes=[], capacity={"storage": "0"})
    del bad["spec"]["hostPath"]
    assert create("PersistentVolume", bad)[1] == [
        "spec.accessModes: Required value",
        'spec.capacity[storage]: Invalid value: "0": must be greater than zero',
        "spec: Required value: must specify a volume type",
    ]
    assert update("PersistentVolume", pv, lambda p: p["spec"]["hostPath"].update(path="/x")) == [
        "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"
    ]


PVC: Obj = {
    "metadata": {"name": "data", "namespace": "d"},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
}


def test_persistent_volume_claim() -> None:
    pvc, errors = create("PersistentVolumeClaim", PVC)
    assert errors == []
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert pvc["status"] == {"phase": "Pending"}
    row = cells("PersistentVolumeClaim", pvc)
    assert (row["Status"], row["Volume"], row["Capacity"], row["StorageClass"]) == (
        "Pending",
        "",
        "",
        "",
    )
    _, errors = create(
        "PersistentVolumeClaim", {"metadata": {"name": "x", "namespace": "d"}, "spec": {}}
    )
    assert errors == [
        "spec.accessModes: Required value: at least 1 access mode is required",
        "spec.resources[storage]: Required value",
    ]


def test_claims_are_immutable_but_may_be_bound_and_grown() -> None:
    pvc, _ = create("PersistentVolumeClaim", PVC)
    assert update("PersistentVolumeClaim", pvc, lambda p: p["spec"].update(volumeName="pv1")) == []
    errors = update(
        "PersistentVolumeClaim", pvc, lambda p: p["spec"].update(accessModes=["ReadWriteMany"])
    )
    assert errors == [
        "spec: Forbidden: spec is immutable after creation except resources.requests and "
        "volumeAttributesClassName for bound claims"
    ]
    pvc["spec"]["volumeName"] = "pv1"
    pvc["status"] = {
        "phase": "Bound",
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce"],
    }
    assert (
        update(
            "PersistentVolumeClaim",
            pvc,
            lambda p: p["spec"]["resources"]["requests"].update(storage="2Gi"),
        )
        == []
    )
    errors = update(
        "PersistentVolumeClaim",
        pvc,
        lambda p: p["spec"]["resources"]["requests"].update(storage="512Mi"),
    )
    assert errors == [
        "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
    ]
    row = cells("PersistentVolumeClaim", pvc)
    assert (row["Status"], row["Volume"], row["Capacity"], row["Access Modes"]) == (
        "Bound",
        "pv1",
        "1Gi",
        "RWO",
    )


# --- LimitRange and ResourceQuota -------------------------------------------------------


def test_limit_range() -> None:
    lr: Obj = {
        "metadata": {"name": "limits", "namespace": "d"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"cpu": "100m"}}]},
    }
    lr, errors = create("LimitRange", lr)
    assert errors == []
    item = lr["spec"]["limits"][0]
    assert (item["default"], item["defaultRequest"]) == ({"cpu": "2"}, {"cpu": "2"})
    assert [c.name for c in BY_KIND["LimitRange"].columns] == ["Created At"]
    assert BY_KIND["LimitRange"].row(lr) == [lr["metadata"]["creationTimestamp"]]
    bad = {
        "metadata": {"name": "l", "namespace": "d"},
        "spec": {"limits": [{"type": "Pod", "max": {"cpu": "1"}, "min": {"cpu": "2"}}]},
    }
    assert create("LimitRange", bad)[1] == [
        'spec.limits[0].min[cpu]: Invalid value: "2": min value 2 is greater than max value 1'
    ]


def test_resource_quota() -> None:
    quota, errors = create(
        "ResourceQuota",
        {
            "metadata": {"name": "q", "namespace": "d"},
            "spec": {"hard": {"pods": "10", "limits.cpu": "4"}},
        },
    )
    assert errors == []
    assert quota["status"] == {}
    quota["status"] = {
        "hard": {"pods": "10", "requests.cpu": "2", "limits.cpu": "4"},
        "used": {"pods": "3", "limits.cpu": "500m"},
    }
    row = cells("ResourceQuota", quota)
    assert (row["Request"], row["Limit"]) == ("pods: 3/10, requests.cpu: 0/2", "limits.cpu: 500m/4")
    _, errors = create(
        "ResourceQuota",
        {"metadata": {"name": "q", "namespace": "d"}, "spec": {"hard": {"pods": "-1"}}},
    )
    assert errors == ['spec.hard[pods]: Invalid value: "-1": must be greater than or equal to 0']


# --- PodTemplate and ReplicationController ---------------------------------------------


TEMPLATE: Obj = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
}


def test_pod_template() -> None:
    pt, errors = create(
        "PodTemplate", {"metadata": {"name": "t", "namespace": "d"}, "template": TEMPLATE}
    )
    assert errors == []
    assert pt["template"]["spec"]["restartPolicy"] == "Always"
    assert BY_KIND["PodTemplate"].row(pt) == ["web", "nginx:1.25", "app=web"]


def test_replication_controller() -> None:
    rc, errors = create(
        "ReplicationController",
        {"metadata": {"name": "rc", "namespace": "d"}, "spec": {"template": TEMPLATE}},
    )
    assert errors == []
    assert rc["spec"]["selector"] == {"app": "web"} and rc["spec"]["replicas"] == 1
    assert rc["metadata"]["labels"] == {"app": "web"}
    row = cells("ReplicationController", rc)
    assert (row["Desired"], row["Current"], row["Ready"], row["Selector"]) == (1, 0, 0, "app=web")
    bad = {
        "metadata": {"name": "rc", "namespace": "d"},
        "spec": {"selector": {"app": "db"}, "template": TEMPLATE},
    }
    assert create("ReplicationController", bad)[1] == [
        'spec.template.metadata.labels: Invalid value: {"app":"web"}: `selector` does not match template `labels`'
    ]


# --- pods through the Kind -------------------------------------------------------------


def test_pod_kind_wiring() -> None:
    p, errors = create(
        "Pod",
        {
            "metadata": {"name": "web", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        },
    )
    assert errors == []
    assert p["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    row = cells("Pod", p)
    assert (row["Ready"], row["Status"], row["Restarts"], row["IP"], row["Node"]) == (
        "0/1",
        "Pending",
        "0",
        "<none>",
        "<none>",
    )
    selectors = BY_KIND["Pod"].field_selectors
    p["spec"]["nodeName"] = "node-1"
    assert selectors["spec.nodeName"](p) == "node-1"
    assert selectors["status.phase"](p) == "Pending"
    assert selectors["spec.restartPolicy"](p) == "Always"
    assert selectors["spec.schedulerName"](p) == "default-scheduler"
    assert selectors["spec.serviceAccountName"](p) == ""
    assert selectors["status.podIP"](p) == ""
    assert selectors["status.nominatedNodeName"](p) == ""
