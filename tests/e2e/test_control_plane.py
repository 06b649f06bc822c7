"""The control plane on simulated nodes, driven by the real kubectl as a new user would.

Aspects: Deployments (create, spread, scale, rolling update within
maxUnavailable, history, undo, pause/resume, cascade and orphan deletes),
StatefulSets (ordered pods, Bound claims), Jobs (completions, backoffLimit),
CronJobs, scheduling failures, node failure and eviction, the HPA, namespace
deletion, and leader election of separate controller-manager and scheduler
processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

Cluster = Any  # tests/e2e/conftest.py's Cluster


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def get_json(c: Cluster, *args: str) -> Any:
    return json.loads(c.kubectl("get", *args, "-o", "json").stdout)


def pods(c: Cluster, *selector: str) -> list[dict[str, Any]]:
    return get_json(c, "pods", *selector)["items"]


def running(c: Cluster, *selector: str) -> list[dict[str, Any]]:
    return [
        p
        for p in pods(c, *selector)
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def test_deployment_lifecycle(sim_cluster: Cluster) -> None:
    c = sim_cluster
    c.kubectl("create", "namespace", "deploy")
    ns = ("-n", "deploy")
    c.kubectl("create", "deployment", "web", "--image=busybox", "--replicas=5", *ns)
    ready = wait_for(
        "5 running pods",
        lambda: len(running(c, "-l", "app=web", *ns)) == 5 and running(c, "-l", "app=web", *ns),
    )
    assert len({p["spec"]["nodeName"] for p in ready}) >= 3, "pods should spread over the nodes"

    c.kubectl("scale", "deployment", "web", "--replicas=50", *ns)
    wait_for("50 running", lambda: len(running(c, "-l", "app=web", *ns)) == 50)
    c.kubectl("scale", "deployment", "web", "--replicas=3", *ns)
    wait_for("3 pods", lambda: len(pods(c, "-l", "app=web", *ns)) == 3)

    # A rolling update never drops below replicas - maxUnavailable available pods.
    c.kubectl("scale", "deployment", "web", "--replicas=8", *ns)
    wait_for(
        "8 available",
        lambda: get_json(c, "deploy", "web", *ns)["status"].get("availableReplicas") == 8,
    )
    watcher = subprocess.Popen(
        [
            "/usr/bin/kubectl",
            f"--kubeconfig={c.kubeconfig}",
            "get",
            "deploy",
            "web",
            *ns,
            "-w",
            "-o",
            'jsonpath={.status.availableReplicas}{"\\n"}',
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=c._kubectl_env,
    )
    try:
        time.sleep(1)
        c.kubectl("set", "image", "deployment/web", "busybox=busybox:1.37", *ns)
        c.kubectl("rollout", "status", "deployment/web", "--timeout=60s", *ns)
    finally:
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
    available = [int(line) for line in out.split() if line.strip().isdigit()]
    assert available and min(available) >= 8 - 2, available  # maxUnavailable 25% of 8 = 2

    history = c.kubectl("rollout", "history", "deployment/web", *ns).stdout
    assert "1 " in history and "2 " in history
    c.kubectl("rollout", "undo", "deployment/web", *ns)
    c.kubectl("rollout", "status", "deployment/web", "--timeout=60s", *ns)
    image = c.kubectl(
        "get", "deploy", "web", *ns, "-o", "jsonpath={.spec.template.spec.containers[0].image}"
    ).stdout
    assert image == "busybox"

    c.kubectl("rollout", "pause", "deployment/web", *ns)
    c.kubectl("set", "image", "deployment/web", "busybox=busybox:1.38", *ns)
    time.sleep(1.5)
    rs_images = c.kubectl(
        "get", "rs", *ns, "-o", "jsonpath={.items[*].spec.template.spec.containers[0].image}"
    ).stdout
    assert "busybox:1.38" not in rs_images, "a paused deployment creates no new ReplicaSet"
    c.kubectl("rollout", "resume", "deployment/web", *ns)
    c.kubectl("rollout", "status", "deployment/web", "--timeout=60s", *ns)

    c.kubectl("delete", "deployment", "web", *ns)
    wait_for(
        "replicasets and pods gone",
        lambda: not get_json(c, "rs", *ns)["items"] and not pods(c, *ns),
    )

    c.kubectl("create", "deployment", "kept", "--image=busybox", "--replicas=2", *ns)
    wait_for("2 running", lambda: len(running(c, "-l", "app=kept", *ns)) == 2)
    c.kubectl("delete", "deployment", "kept", "--cascade=orphan", *ns)
    time.sleep(2)
    assert len(get_json(c, "rs", *ns)["items"]) == 1
    assert len(running(c, "-l", "app=kept", *ns)) == 2


STATEFULSET = """
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: sts}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: busybox}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"""


def test_statefulset_ordered_with_bound_claims(sim_cluster: Cluster) -> None:
    c = sim_cluster
    c.kubectl("create", "namespace", "sts")
    c.kubectl("apply", "-f", "-", input=STATEFULSET)
    wait_for("3 running", lambda: len(running(c, "-n", "sts")) == 3, timeout=40)
    started = sorted(pods(c, "-n", "sts"), key=lambda p: p["metadata"]["creationTimestamp"])
    assert [p["metadata"]["name"] for p in started] == ["web-0", "web-1", "web-2"]
    wait_for(
        "3 bound claims",
        lambda: (
            [p["status"].get("phase") for p in get_json(c, "pvc", "-n", "sts")["items"]]
            == ["Bound"] * 3
        ),
    )
    names = sorted(p["metadata"]["name"] for p in get_json(c, "pvc", "-n", "sts")["items"])
    assert names == ["data-web-0", "data-web-1", "data-web-2"]


def job(name: str, completions: int, parallelism: int, exit_code: int, backoff: int = 6) -> str:
    return json.dumps(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": "jobs"},
            "spec": {
                "completions": completions,
                "parallelism": parallelism,
                "backoffLimit": backoff,
                "template": {
                    "metadata": {"annotations": {"sim.nanokube.io/run-seconds": "1"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "c",
                                "image": "busybox",
                                "command": ["sh", "-c", f"exit {exit_code}"],
                            }
                        ],
                    },
                },
            },
        }
    )


def test_jobs_complete_and_fail(sim_cluster: Cluster) -> None:
    c = sim_cluster
    c.kubectl("create", "namespace", "jobs")
    c.kubectl("apply", "-f", "-", input=job("ok", 5, 2, 0))
    c.kubectl("apply", "-f", "-", input=job("bad", 1, 1, 1, backoff=2))
    c.kubectl("wait", "-n", "jobs", "job/ok", "--for=condition=Complete", "--timeout=60s")
    ok = get_json(c, "job", "ok", "-n", "jobs")
    assert ok["status"]["succeeded"] == 5
    c.kubectl("wait", "-n", "jobs", "job/bad", "--for=condition=Failed", "--timeout=60s")
    bad = get_json(c, "job", "bad", "-n", "jobs")
    failed = next(x for x in bad["status"]["conditions"] if x["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"] == "Job has reached the specified backoff limit"
    assert bad["status"]["failed"] == 3


def test_cronjob_creates_jobs(sim_cluster: Cluster) -> None:
    c = sim_cluster
    c.kubectl("create", "namespace", "cron")
    c.kubectl(
        "create",
        "cronjob",
        "tick",
        "--image=busybox",
        "--schedule=*/1 * * * *",
        "-n",
        "cron",
        "--",
        "true",
    )
    wait_for(
        "a job from the cronjob",
        lambda: get_json(c, "jobs", "-n", "cron")["items"],
        timeout=75,
        every=2,
    )
    job = get_json(c, "jobs", "-n", "cron")["items"][0]
    assert job["metadata"]["ownerReferences"][0]["name"] == "tick"


def test_pod_too_big_stays_pending(sim_cluster: Cluster) -> None:
    c = sim_cluster
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "huge"},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "64"}}}
            ]
        },
    }
    c.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def failed_scheduling() -> str:
        events = get_json(
            c, "events", "--field-selector", "involvedObject.name=huge,reason=FailedScheduling"
        )
        return events["items"][0]["message"] if events["items"] else ""

    message = wait_for("FailedScheduling", failed_scheduling)
    assert message.startswith("0/4 nodes are available: 4 Insufficient cpu."), message
    assert get_json(c, "pod", "huge")["status"]["phase"] == "Pending"
    c.kubectl("delete", "pod", "huge")


def test_stopped_node_evicts_and_reschedules(sim_cluster: Cluster) -> None:
    c = sim_cluster
    c.kubectl("create", "namespace", "evict")
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "tol", "namespace": "evict"},
        "spec": {
            "replicas": 8,
            "selector": {"matchLabels": {"app": "tol"}},
            "template": {
                "metadata": {"labels": {"app": "tol"}},
                "spec": {
                    "tolerations": [
                        {
                            "key": "node.kubernetes.io/unreachable",
                            "operator": "Exists",
                            "effect": "NoExecute",
                            "tolerationSeconds": 2,
                        }
                    ],
                    "containers": [{"name": "c", "image": "busybox"}],
                },
            },
        },
    }
    c.kubectl("apply", "-f", "-", input=json.dumps(dep))
    wait_for("8 running", lambda: len(running(c, "-n", "evict")) == 8)
    victim = running(c, "-n", "evict")[0]["spec"]["nodeName"]
    c.kubectl("annotate", "node", victim, "sim.nanokube.io/stopped=true")
    try:
        wait_for(
            "node NotReady",
            lambda: "NotReady" in c.kubectl("get", "node", victim).stdout,
            timeout=30,
        )
        wait_for(
            "pods moved off the stopped node",
            lambda: (
                len(running(c, "-n", "evict")) == 8
                and all(p["spec"]["nodeName"] != victim for p in running(c, "-n", "evict"))
            ),
            timeout=40,
        )
        taints = get_json(c, "node", victim)["spec"].get("taints") or []
        assert ("node.kubernetes.io/unreachable", "NoExecute") in {
            (t["key"], t["effect"]) for t in taints
        }
    finally:
        c.kubectl("annotate", "node", victim, "sim.nanokube.io/stopped-")
    wait_for(
        "node Ready again", lambda: " Ready " in c.kubectl("get", "node", victim).stdout, timeout=30
    )


HPA_DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "busy", "namespace": "hpa"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "busy"}},
        "template": {
            "metadata": {"labels": {"app": "busy"}},
            "spec": {
                "containers": [
                    {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}}
                ]
            },
        },
    },
}
HPA = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "busy", "namespace": "hpa"},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "busy"},
        "minReplicas": 1,
        "maxReplicas": 6,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 50},
                },
            }
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
    },
}


def test_hpa_follows_cpu_usage(sim_cluster: Cluster) -> None:
    c = sim_cluster
    c.kubectl("create", "namespace", "hpa")
    c.kubectl("apply", "-f", "-", input=json.dumps(HPA_DEPLOYMENT))
    wait_for("2 running", lambda: len(running(c, "-n", "hpa")) == 2)
    c.kubectl(
        "annotate",
        "pods",
        "-n",
        "hpa",
        "-l",
        "app=busy",
        "sim.nanokube.io/cpu-usage=100m",
        "--overwrite",
    )
    c.kubectl("apply", "-f", "-", input=json.dumps(HPA))
    wait_for(
        "scale up",
        lambda: get_json(c, "deploy", "busy", "-n", "hpa")["spec"]["replicas"] >= 4,
        timeout=60,
    )
    for p in running(c, "-n", "hpa"):
        c.kubectl(
            "annotate",
            "pod",
            p["metadata"]["name"],
            "-n",
            "hpa",
            "sim.nanokube.io/cpu-usage=10m",
            "--overwrite",
        )
    # New pods carry no usage annotation: the simulated usage defaults to 0.
    wait_for(
        "scale down",
        lambda: get_json(c, "deploy", "busy", "-n", "hpa")["spec"]["replicas"] <= 2,
        timeout=90,
    )


def test_namespace_deletion_removes_everything(sim_cluster: Cluster) -> None:
    c = sim_cluster
    c.kubectl("create", "namespace", "gone")
    c.kubectl("create", "deployment", "d", "--image=busybox", "--replicas=3", "-n", "gone")
    c.kubectl("create", "configmap", "cm", "--from-literal=a=b", "-n", "gone")
    wait_for("3 running", lambda: len(running(c, "-n", "gone")) == 3)
    c.kubectl("delete", "namespace", "gone", "--timeout=60s")
    r = c.kubectl("get", "namespace", "gone", check=False)
    assert r.returncode == 1 and "NotFound" in r.stderr


def test_leader_election_of_separate_components(headless_cluster: Cluster) -> None:
    c = headless_cluster
    procs: dict[int, subprocess.Popen[bytes]] = {}
    try:
        for _ in range(2):
            for component in ("controller-manager", "scheduler"):
                p = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "nanokube.cli",
                        component,
                        "--kubeconfig",
                        str(c.kubeconfig),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                procs[p.pid] = p

        def holders() -> dict[str, str]:
            leases = get_json(c, "leases", "-n", "kube-system")["items"]
            return {x["metadata"]["name"]: x["spec"].get("holderIdentity", "") for x in leases}

        first = wait_for(
            "both leases held",
            lambda: (
                lambda h: (
                    h if h.get("kube-controller-manager") and h.get("kube-scheduler") else None
                )
            )(holders()),
        )
        time.sleep(3)
        assert holders() == first, "a standby took a lease that was held"
        # Work happens exactly once: a deployment gets exactly its replicas.
        c.kubectl("create", "deployment", "le", "--image=busybox", "--replicas=4")
        wait_for("4 running", lambda: len(running(c, "-l", "app=le")) == 4)
        time.sleep(2)
        assert len(pods(c, "-l", "app=le")) == 4

        # Kill -9 both leaders (the identity is HOST_PID_RANDOM): standbys take over once
        # the lease (10 s) has run out unrenewed, noticed within a retry period (2 s).
        for name in ("kube-controller-manager", "kube-scheduler"):
            pid = int(first[name].split("_")[1])
            procs[pid].kill()
        wait_for(
            "new leaders",
            lambda: all(
                holders()[n] != first[n] for n in ("kube-controller-manager", "kube-scheduler")
            ),
            timeout=15,
        )
        c.kubectl("scale", "deployment", "le", "--replicas=6")
        wait_for("6 running after handover", lambda: len(running(c, "-l", "app=le")) == 6)
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(timeout=15)
