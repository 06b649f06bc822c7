"""Pods: defaulting (pods vs templates), QoS, validation messages, update immutability,
and the STATUS / RESTARTS cells of `kubectl get pods`."""

import copy
import time
from typing import Any

from nanokube.api.meta import now_rfc3339
from nanokube.api.resources.pod import (
    default_pod,
    default_pod_spec,
    pod_qos_class,
    prepare_pod_create,
    validate_pod,
    validate_pod_spec,
    validate_pod_template,
    validate_pod_update,
)
from nanokube.api.resources.pod_printing import pod_row, pod_status_summary

Obj = dict[str, Any]


def pod(*containers: Obj, **spec: Any) -> Obj:
    body = {"containers": list(containers) or [{"name": "app", "image": "nginx:1.25"}], **spec}
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": body}


def messages(causes: list[Any]) -> list[str]:
    return [f"{c.field}: {c.message}" for c in causes]


# --- defaults ---------------------------------------------------------------------------


def test_pod_defaults_match_upstream() -> None:
    p = pod({"name": "app", "image": "nginx", "ports": [{"containerPort": 80}]})
    default_pod(p)
    spec = p["spec"]
    assert {k: spec[k] for k in spec if k != "containers"} == {
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "terminationGracePeriodSeconds": 30,
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "enableServiceLinks": True,
    }
    assert spec["containers"][0] == {
        "name": "app",
        "image": "nginx",
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "imagePullPolicy": "Always",
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def test_image_pull_policy_follows_the_tag() -> None:
    images = {
        "nginx": "Always",
        "nginx:latest": "Always",
        "registry:5000/app": "Always",
        "registry:5000/app:v1": "IfNotPresent",
        "nginx@sha256:" + "a" * 64: "IfNotPresent",
    }
    for image, policy in images.items():
        spec = {"containers": [{"name": "c", "image": image}]}
        default_pod_spec(spec)
        assert spec["containers"][0]["imagePullPolicy"] == policy, image


def test_probe_volume_and_env_defaults() -> None:
    spec: Obj = {
        "containers": [
            {
                "name": "c",
                "image": "i:1",
                "livenessProbe": {"httpGet": {"port": 80}},
                "env": [
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
                ],
            }
        ],
        "volumes": [
            {"name": "a"},
            {"name": "b", "secret": {"secretName": "s"}},
            {"name": "c", "configMap": {"name": "m"}},
        ],
    }
    default_pod_spec(spec)
    assert spec["containers"][0]["livenessProbe"] == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert spec["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert spec["volumes"][0] == {"name": "a", "emptyDir": {}}
    assert spec["volumes"][1]["secret"]["defaultMode"] == 420
    assert spec["volumes"][2]["configMap"]["defaultMode"] == 420


def test_requests_default_to_limits_on_pods_only() -> None:
    container = {
        "name": "c",
        "image": "i:1",
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
    }
    p = pod(copy.deepcopy(container))
    default_pod(p)
    assert p["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    template_spec = {"containers": [copy.deepcopy(container)]}
    default_pod_spec(template_spec)
    assert "requests" not in template_spec["containers"][0]["resources"]
    assert "enableServiceLinks" not in template_spec


def test_host_network_pods_default_host_ports() -> None:
    p = pod({"name": "c", "image": "i:1", "ports": [{"containerPort": 8080}]}, hostNetwork=True)
    default_pod(p)
    assert p["spec"]["containers"][0]["ports"][0]["hostPort"] == 8080


# --- QoS and create ---------------------------------------------------------------------


def test_qos_classes() -> None:
    def qos(*resources: Obj) -> str:
        p = pod(
            *({"name": f"c{i}", "image": "i:1", "resources": r} for i, r in enumerate(resources))
        )
        default_pod(p)
        return pod_qos_class(p["spec"])

    assert qos({}) == "BestEffort"
    assert qos({"limits": {"cpu": "500m", "memory": "128Mi"}}) == "Guaranteed"
    assert (
        qos(
            {
                "requests": {"cpu": "500m", "memory": "128Mi"},
                "limits": {"cpu": "0.5", "memory": "128Mi"},
            }
        )
        == "Guaranteed"
    )
    assert qos({"requests": {"cpu": "100m"}}) == "Burstable"
    assert qos({"limits": {"cpu": "1", "memory": "1Gi"}}, {}) == "Burstable"
    assert (
        qos({"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "1Gi"}}) == "Burstable"
    )


def test_a_new_pod_is_pending_with_its_qos() -> None:
    p = pod()
    p["status"] = {"phase": "Running"}
    default_pod(p)
    prepare_pod_create(p)
    assert p["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


# --- validation -------------------------------------------------------------------------


def valid(p: Obj) -> list[str]:
    default_pod(p)
    return messages(validate_pod(p))


def test_a_defaulted_pod_is_valid() -> None:
    assert valid(pod()) == []


def test_invalid_pod_name() -> None:
    p = pod()
    p["metadata"]["name"] = "Bad_Name"
    assert valid(p) == [
        'metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of '
        "lower case alphanumeric characters, '-' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'example.com', regex used for validation is "
        r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    ]


def test_negative_container_port() -> None:
    p = pod({"name": "app", "image": "nginx", "ports": [{"containerPort": -1}]})
    assert valid(p) == [
        "spec.containers[0].ports[0].containerPort: Invalid value: -1: must be between 1 and 65535, inclusive"
    ]


def test_container_rules() -> None:
    p = pod(
        {"name": "App", "image": "nginx"},
        {"name": "side"},
        {"name": "side", "image": "x:1"},
        restartPolicy="Sometimes",
    )
    out = valid(p)
    assert out[0].startswith(
        'spec.containers[0].name: Invalid value: "App": a lowercase RFC 1123 label'
    )
    assert out[1:] == [
        "spec.containers[1].image: Required value",
        'spec.containers[2].name: Duplicate value: "side"',
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
    ]


def test_no_containers() -> None:
    p = pod()
    p["spec"]["containers"] = []
    assert valid(p) == ["spec.containers: Required value"]


def test_volumes_and_mounts() -> None:
    p = pod(
        {
            "name": "app",
            "image": "i:1",
            "volumeMounts": [
                {"name": "data", "mountPath": "/d"},
                {"name": "cfg", "mountPath": "/d"},
            ],
        },
        volumes=[{"name": "cfg", "configMap": {"name": "c"}}, {"name": "cfg", "emptyDir": {}}],
    )
    assert valid(p) == [
        'spec.volumes[1].name: Duplicate value: "cfg"',
        'spec.containers[0].volumeMounts[0].name: Not found: "data"',
        'spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/d": must be unique',
    ]


def test_resources_requests_must_not_exceed_limits() -> None:
    p = pod(
        {
            "name": "app",
            "image": "i:1",
            "resources": {"requests": {"cpu": "2", "memory": "-1"}, "limits": {"cpu": "1500m"}},
        }
    )
    assert valid(p) == [
        'spec.containers[0].resources.requests[memory]: Invalid value: "-1": must be greater than or equal to 0',
        'spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1500m',
    ]


def test_env_ports_and_probes() -> None:
    p = pod(
        {
            "name": "app",
            "image": "i:1",
            "env": [{"name": "A=B", "value": "x"}, {"name": "OK", "valueFrom": {}}],
            "ports": [{"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81}],
            "livenessProbe": {"successThreshold": 2, "exec": {"command": ["true"]}},
            "readinessProbe": {},
        }
    )
    assert valid(p) == [
        'spec.containers[0].ports[1].name: Duplicate value: "http"',
        'spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name '
        "must consist only of printable ASCII characters other than '='",
        'spec.containers[0].env[1].valueFrom: Invalid value: "": must specify one of: `fieldRef`, '
        "`resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
        "spec.containers[0].readinessProbe: Required value: must specify a handler type",
    ]


def test_tolerations() -> None:
    p = pod(
        tolerations=[
            {"operator": "Equal", "value": "x"},
            {"key": "k", "operator": "Exists", "effect": "Never"},
        ]
    )
    assert valid(p) == [
        'spec.tolerations[0].operator: Invalid value: "Equal": operator must be Exists when `key` '
        'is empty, which means "match all values and all keys"',
        'spec.tolerations[1].effect: Unsupported value: "Never": supported values: "NoSchedule", '
        '"PreferNoSchedule", "NoExecute"',
    ]


def test_init_container_names_clash_with_app_containers() -> None:
    p = pod(
        initContainers=[
            {"name": "app", "image": "busybox:1", "readinessProbe": {"exec": {"command": ["x"]}}}
        ]
    )
    assert valid(p) == [
        'spec.initContainers[0].name: Duplicate value: "app"',
        "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers "
        "without restartPolicy=Always",
    ]


def test_template_validation_reports_at_the_template_path() -> None:
    template: Obj = {
        "metadata": {"labels": {"app": "bad value"}},
        "spec": {"containers": [{"name": "c"}]},
    }
    default_pod_spec(template["spec"])
    out = messages(validate_pod_template(template, "spec.template"))
    assert out[0].startswith('spec.template.metadata.labels: Invalid value: "bad value"')
    assert out[1:] == ["spec.template.spec.containers[0].image: Required value"]
    assert validate_pod_spec(template["spec"], "spec")[0].field == "spec.containers[0].image"


def test_ephemeral_containers_cannot_be_set_on_create() -> None:
    p = pod(ephemeralContainers=[{"name": "debug", "image": "busybox:1"}])
    assert valid(p) == ["spec.ephemeralContainers: Forbidden: cannot be set on create"]


# --- updates ------------------------------------------------------------------------------


def updated(change: Any) -> list[str]:
    old = pod(
        tolerations=[
            {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
        ]
    )
    default_pod(old)
    new = copy.deepcopy(old)
    change(new["spec"])
    return messages(validate_pod_update(new, old))


def test_pod_update_may_change_images_deadlines_and_add_tolerations() -> None:
    assert updated(lambda s: s["containers"][0].update(image="nginx:1.27")) == []
    assert updated(lambda s: s.update(activeDeadlineSeconds=60)) == []
    assert updated(lambda s: s["tolerations"].append({"key": "x", "operator": "Exists"})) == []
    assert updated(lambda s: s["tolerations"][0].update(tolerationSeconds=10)) == []


def test_pod_update_may_not_change_other_fields() -> None:
    [msg] = updated(lambda s: s.update(restartPolicy="Never"))
    assert msg.startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
        "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
        "set to 1 if it was previously negative)"
    )
    assert "restartPolicy" in msg
    assert updated(lambda s: s["tolerations"].clear()) == [
        "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
    ]
    assert updated(lambda s: s["containers"].append({"name": "b", "image": "x:1"}))[-1] == (
        "spec.containers: Forbidden: pod updates may not add or remove containers"
    )


# --- STATUS and RESTARTS ---------------------------------------------------------------


def ago(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds))


def status_of(status: Obj, deleting: bool = False, **spec: Any) -> tuple[str, str]:
    p = pod(**spec)
    p["status"] = status
    if deleting:
        p["metadata"]["deletionTimestamp"] = now_rfc3339()
    ready, total, reason, _, _ = pod_status_summary(p)
    return f"{ready}/{total}", reason


def cs(state: Obj, ready: bool = False, restarts: int = 0, **extra: Any) -> Obj:
    return {"name": "app", "state": state, "ready": ready, "restartCount": restarts, **extra}


def test_status_cells() -> None:
    assert status_of({"phase": "Pending"}) == ("0/1", "Pending")
    waiting = {"waiting": {"reason": "ContainerCreating"}}
    assert status_of({"phase": "Pending", "containerStatuses": [cs(waiting)]}) == (
        "0/1",
        "ContainerCreating",
    )
    running = {"running": {"startedAt": ago(5)}}
    assert status_of({"phase": "Running", "containerStatuses": [cs(running, ready=True)]}) == (
        "1/1",
        "Running",
    )
    assert status_of({"phase": "Running", "containerStatuses": [cs(running)]}) == ("0/1", "Running")
    crash = {"waiting": {"reason": "CrashLoopBackOff"}}
    assert status_of({"phase": "Running", "containerStatuses": [cs(crash, restarts=3)]}) == (
        "0/1",
        "CrashLoopBackOff",
    )
    done = {"terminated": {"reason": "Completed", "exitCode": 0}}
    assert status_of({"phase": "Succeeded", "containerStatuses": [cs(done)]}) == (
        "0/1",
        "Completed",
    )
    error = {"terminated": {"reason": "Error", "exitCode": 1}}
    assert status_of({"phase": "Failed", "containerStatuses": [cs(error)]}) == ("0/1", "Error")
    oom = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
    assert status_of({"phase": "Running", "containerStatuses": [cs(oom)]}) == ("0/1", "OOMKilled")
    assert status_of(
        {"phase": "Failed", "containerStatuses": [cs({"terminated": {"exitCode": 2}})]}
    ) == ("0/1", "ExitCode:2")
    assert status_of(
        {"phase": "Running", "containerStatuses": [cs(running, ready=True)]}, deleting=True
    ) == ("1/1", "Terminating")
    assert status_of({"phase": "Succeeded"}, deleting=True) == ("0/1", "Succeeded")
    assert status_of({"phase": "Running", "reason": "NodeLost"}, deleting=True) == (
        "0/1",
        "Unknown",
    )
    gated = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
    }
    assert status_of(gated) == ("0/1", "SchedulingGated")


def test_partly_completed_pod_reads_running_or_not_ready() -> None:
    p = pod({"name": "a", "image": "i:1"}, {"name": "b", "image": "i:1"})
    p["status"] = {
        "phase": "Running",
        "containerStatuses": [
            {"name": "a", "ready": True, "state": {"running": {}}},
            {
                "name": "b",
                "ready": False,
                "state": {"terminated": {"reason": "Completed", "exitCode": 0}},
            },
        ],
    }
    assert pod_status_summary(p)[2] == "NotReady"
    p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert pod_status_summary(p)[2] == "Running"


def test_init_container_status() -> None:
    init = [{"name": "init", "image": "busybox:1"}]
    waiting = {"name": "init", "state": {"waiting": {"reason": "PodInitializing"}}}
    assert status_of(
        {"phase": "Pending", "initContainerStatuses": [waiting]}, initContainers=init
    ) == ("0/1", "Init:0/1")
    crash = {
        "name": "init",
        "restartCount": 2,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
    }
    assert status_of(
        {"phase": "Pending", "initContainerStatuses": [crash]}, initContainers=init
    ) == ("0/1", "Init:CrashLoopBackOff")
    failed = {"name": "init", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
    assert status_of(
        {"phase": "Pending", "initContainerStatuses": [failed]}, initContainers=init
    ) == ("0/1", "Init:Error")


def test_sidecars_count_as_pod_containers() -> None:
    init = [{"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"}]
    status = {
        "phase": "Running",
        "initContainerStatuses": [
            {"name": "proxy", "started": True, "ready": True, "state": {"running": {}}}
        ],
        "containerStatuses": [cs({"running": {}}, ready=True)],
    }
    assert status_of(status, initContainers=init) == ("2/2", "Running")


def test_restarts_cell_says_when() -> None:
    p = pod()
    p["metadata"]["creationTimestamp"] = ago(3600)
    last = {"terminated": {"exitCode": 1, "finishedAt": ago(630)}}
    p["status"] = {
        "phase": "Running",
        "podIPs": [{"ip": "10.42.0.5"}],
        "containerStatuses": [cs({"running": {}}, ready=True, restarts=3, lastState=last)],
    }
    p["spec"]["nodeName"] = "node-1"
    assert pod_row(p) == [
        "1/1",
        "Running",
        "3 (10m ago)",
        "60m",
        "10.42.0.5",
        "node-1",
        "<none>",
        "<none>",
    ]
    p["status"]["containerStatuses"][0]["restartCount"] = 0
    p["spec"]["readinessGates"] = [{"conditionType": "example.com/ready"}]
    assert pod_row(p)[2] == "0"
    assert pod_row(p)[7] == "0/1"
