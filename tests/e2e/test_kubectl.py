"""The real kubectl 1.33 against a real `nanokube server`: what a new user tries first.

Aspects: version and discovery, apply of a multi-document manifest (created,
unchanged, configured with a strategic merge by container name), get in every
output format and for every kind, watch, describe, label/annotate/patch/scale/
edit, delete held by a finalizer, explain, diff, wait, raw health, refusals
(422 and 400) that store nothing, and create from protobuf bodies.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

MANIFESTS = Path(__file__).parent / "manifests"


@pytest.fixture(scope="module")
def applied(cluster):
    out = cluster.kubectl("apply", "-f", str(MANIFESTS / "app.yaml")).stdout
    return out


def test_version(cluster) -> None:
    out = cluster.kubectl("version", "-o", "json").stdout
    server = json.loads(out)["serverVersion"]
    assert server["major"] == "1" and server["minor"] == "33"


def test_api_resources(cluster) -> None:
    out = cluster.kubectl("api-resources").stdout
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    rows: dict[str, list[str]] = {}
    for line in lines[1:]:  # the first of a name: pods of v1, not of metrics.k8s.io
        rows.setdefault(line.split()[0], line.split())
    assert rows["deployments"][1:] == ["deploy", "apps/v1", "true", "Deployment"]
    assert rows["pods"][1:] == ["po", "v1", "true", "Pod"]
    for name in (
        "statefulsets",
        "jobs",
        "cronjobs",
        "horizontalpodautoscalers",
        "leases",
        "customresourcedefinitions",
        "clusterroles",
        "poddisruptionbudgets",
    ):
        assert name in rows


def test_create_namespace_uses_protobuf_and_works(cluster) -> None:
    out = cluster.kubectl("create", "namespace", "proto-ns").stdout
    assert out.strip() == "namespace/proto-ns created"
    out = cluster.kubectl("get", "namespace", "proto-ns").stdout
    assert out.splitlines()[1].split()[:2] == ["proto-ns", "Active"]
    out = cluster.kubectl(
        "create", "configmap", "pcm", "-n", "proto-ns", "--from-literal=a=b"
    ).stdout
    assert out.strip() == "configmap/pcm created"
    data = json.loads(cluster.kubectl("get", "cm", "pcm", "-n", "proto-ns", "-o", "json").stdout)
    assert data["data"] == {"a": "b"}
    cluster.kubectl(
        "create", "deployment", "pdep", "-n", "proto-ns", "--image=busybox", "--replicas=0"
    )
    dep = json.loads(
        cluster.kubectl("get", "deploy", "pdep", "-n", "proto-ns", "-o", "json").stdout
    )
    assert dep["spec"]["replicas"] == 0


def test_apply_created_unchanged_configured(cluster, applied) -> None:
    assert "namespace/shop created" in applied
    for line in (
        "configmap/settings created",
        "secret/creds created",
        "service/web created",
        "deployment.apps/web created",
        "statefulset.apps/db created",
        "job.batch/migrate created",
        "cronjob.batch/report created",
        "horizontalpodautoscaler.autoscaling/web created",
    ):
        assert line in applied
    again = cluster.kubectl("apply", "-f", str(MANIFESTS / "app.yaml")).stdout
    # A Secret given as stringData is "configured" on every apply, as upstream:
    # the server folds stringData into data, so the client's patch is never empty.
    assert again.count("unchanged") == 8 and "secret/creds configured" in again, again
    edited = (
        (MANIFESTS / "app.yaml")
        .read_text()
        .replace('command: ["httpd", "-f", "-p", "8080"]', 'command: ["httpd", "-f", "-p", "9090"]')
        .replace("mode: production", "mode: staging")
    )
    out = cluster.kubectl("apply", "-f", "-", input=edited).stdout
    assert "deployment.apps/web configured" in out and "configmap/settings configured" in out
    dep = json.loads(cluster.kubectl("get", "deploy", "web", "-n", "shop", "-o", "json").stdout)
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "sidecar"]
    assert containers[0]["command"] == ["httpd", "-f", "-p", "9090"]
    assert dep["metadata"]["generation"] == 2
    # restore for the other tests
    cluster.kubectl("apply", "-f", str(MANIFESTS / "app.yaml"))


def test_get_every_kind_with_upstream_columns(cluster, applied) -> None:
    expect = {
        "deployments": ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "statefulsets": ["NAME", "READY", "AGE"],
        "services": ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
        "configmaps": ["NAME", "DATA", "AGE"],
        "secrets": ["NAME", "TYPE", "DATA", "AGE"],
        "jobs": ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "cronjobs": [
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST",
            "SCHEDULE",
            "AGE",
        ],
        "hpa": ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"],
    }
    for kind, header in expect.items():
        out = cluster.kubectl("get", kind, "-n", "shop").stdout
        assert out.splitlines()[0].split() == header, (kind, out)
    svc = cluster.kubectl("get", "svc", "web", "-n", "shop").stdout.splitlines()[1].split()
    assert svc[1] == "ClusterIP" and svc[2].startswith("10.43.") and svc[4] == "80/TCP"
    out = cluster.kubectl("get", "namespaces").stdout
    assert out.splitlines()[0].split() == ["NAME", "STATUS", "AGE"]
    assert any(line.startswith("kube-system") for line in out.splitlines())
    wide = cluster.kubectl("get", "deploy", "-n", "shop", "-o", "wide").stdout
    assert wide.splitlines()[0].split()[5:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    all_ns = cluster.kubectl("get", "cm", "-A").stdout
    assert "shop" in all_ns and all_ns.splitlines()[0].split()[0] == "NAMESPACE"


def test_get_output_formats(cluster, applied) -> None:
    doc = cluster.kubectl("get", "cm", "settings", "-n", "shop", "-o", "yaml").stdout
    assert "kind: ConfigMap" in doc and "mode: production" in doc
    name = cluster.kubectl("get", "cm", "settings", "-n", "shop", "-o", "name").stdout
    assert name.strip() == "configmap/settings"
    jp = cluster.kubectl(
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name}",
    ).stdout
    assert jp == "app sidecar"
    labels = cluster.kubectl("get", "deploy", "-n", "shop", "--show-labels").stdout
    assert "LABELS" in labels.splitlines()[0]


def test_get_watch_streams_later_changes(cluster, applied) -> None:
    proc = subprocess.Popen(
        [
            "/usr/bin/kubectl",
            f"--kubeconfig={cluster.kubeconfig}",
            "get",
            "cm",
            "-n",
            "shop",
            "-w",
            "--output-watch-events",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster._kubectl_env,
    )
    try:
        time.sleep(1.5)
        cluster.kubectl("create", "configmap", "watched", "-n", "shop", "--from-literal=x=1")
        cluster.kubectl("delete", "configmap", "watched", "-n", "shop")
        deadline = time.time() + 10
        lines: list[str] = []
        assert proc.stdout is not None
        while time.time() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "DELETED" in line and "watched" in line:
                break
        text = "".join(lines)
        assert "ADDED" in text and "watched" in text and "DELETED" in text, text
    finally:
        proc.kill()
        proc.wait()


def test_describe(cluster, applied) -> None:
    out = cluster.kubectl("describe", "deployment", "web", "-n", "shop").stdout
    assert "Name:" in out and "web" in out and "Selector:" in out and "app=web" in out
    assert "StrategyType:" in out and "RollingUpdate" in out


def test_label_annotate_patch_scale(cluster, applied) -> None:
    cluster.kubectl("label", "cm", "settings", "-n", "shop", "tier=backend")
    cluster.kubectl("annotate", "cm", "settings", "-n", "shop", "note=hello")
    cm = json.loads(cluster.kubectl("get", "cm", "settings", "-n", "shop", "-o", "json").stdout)
    assert cm["metadata"]["labels"]["tier"] == "backend"
    assert cm["metadata"]["annotations"]["note"] == "hello"
    cluster.kubectl(
        "patch", "cm", "settings", "-n", "shop", "--type=merge", "-p", '{"data":{"m":"1"}}'
    )
    cluster.kubectl(
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "--type=json",
        "-p",
        '[{"op":"add","path":"/data/j","value":"2"}]',
    )
    cluster.kubectl(
        "patch",
        "deploy",
        "web",
        "-n",
        "shop",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.37"}]}}}}',
    )
    cm = json.loads(cluster.kubectl("get", "cm", "settings", "-n", "shop", "-o", "json").stdout)
    assert cm["data"]["m"] == "1" and cm["data"]["j"] == "2"
    dep = json.loads(cluster.kubectl("get", "deploy", "web", "-n", "shop", "-o", "json").stdout)
    images = {c["name"]: c["image"] for c in dep["spec"]["template"]["spec"]["containers"]}
    assert images == {"app": "busybox:1.36", "sidecar": "busybox:1.37"}
    out = cluster.kubectl("scale", "deploy", "web", "-n", "shop", "--replicas=4").stdout
    assert out.strip() == "deployment.apps/web scaled"
    rep = cluster.kubectl(
        "get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.replicas}"
    ).stdout
    assert rep == "4"
    cluster.kubectl("scale", "deploy", "web", "-n", "shop", "--replicas=2", "--current-replicas=4")


def test_edit_with_editor_script(cluster, applied, tmp_path) -> None:
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/mode: .*/mode: edited/' \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    out = cluster.kubectl(
        "edit", "cm", "settings", "-n", "shop", env={"EDITOR": str(editor)}
    ).stdout
    assert "configmap/settings edited" in out
    mode = cluster.kubectl(
        "get", "cm", "settings", "-n", "shop", "-o", "jsonpath={.data.mode}"
    ).stdout
    assert mode == "edited"


def test_delete_held_by_finalizer(cluster) -> None:
    cluster.kubectl("create", "configmap", "held", "--from-literal=a=b")
    cluster.kubectl(
        "patch",
        "cm",
        "held",
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":["example.com/hold"]}}',
    )
    out = cluster.kubectl("delete", "cm", "held", "--wait=false").stdout
    assert 'configmap "held" deleted' in out
    ts = cluster.kubectl("get", "cm", "held", "-o", "jsonpath={.metadata.deletionTimestamp}").stdout
    assert ts
    cluster.kubectl(
        "patch",
        "cm",
        "held",
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )
    gone = cluster.kubectl("get", "cm", "held", check=False)
    assert gone.returncode == 1 and 'configmaps "held" not found' in gone.stderr


def test_explain(cluster) -> None:
    out = cluster.kubectl("explain", "pod.spec.containers").stdout
    assert "KIND:       Pod" in out and "FIELD: containers <[]Container>" in out
    assert "imagePullPolicy" in out


def test_diff(cluster) -> None:
    manifest = (
        (MANIFESTS / "app.yaml")
        .read_text()
        .split("---")[4]
        .replace("namespace: shop", "namespace: default")
    )
    cluster.kubectl("apply", "-f", "-", input=manifest)
    same = cluster.kubectl("diff", "-f", "-", input=manifest, check=False)
    assert same.returncode == 0, same.stdout + same.stderr
    changed = cluster.kubectl(
        "diff", "-f", "-", input=manifest.replace("replicas: 2", "replicas: 3"), check=False
    )
    assert (
        changed.returncode == 1
        and "-  replicas: 2" in changed.stdout
        and "+  replicas: 3" in changed.stdout
    )
    replicas = cluster.kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout
    assert replicas == "2"  # diff is a dry run


def test_wait_for_jsonpath(cluster) -> None:
    cluster.kubectl("create", "configmap", "waited", "--from-literal=ready=yes")
    out = cluster.kubectl(
        "wait", "cm/waited", "--for=jsonpath={.data.ready}=yes", "--timeout=10s"
    ).stdout
    assert "condition met" in out


def test_get_raw_readyz(cluster) -> None:
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_refusals_are_upstream_errors_and_store_nothing(cluster) -> None:
    bad_name = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "Bad_Name"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    r = cluster.kubectl("create", "-f", "-", input=json.dumps(bad_name), check=False)
    assert r.returncode == 1
    assert 'The Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"' in r.stderr
    bad_port = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "badport"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": -1}]}]
        },
    }
    r = cluster.kubectl("create", "-f", "-", input=json.dumps(bad_port), check=False)
    assert r.returncode == 1
    assert (
        "spec.containers[0].ports[0].containerPort: Invalid value: -1: must be between 1 and 65535, inclusive"
        in r.stderr
    )
    bad_sel = (
        (MANIFESTS / "app.yaml")
        .read_text()
        .split("---")[4]
        .replace("name: web", "name: mismatched", 1)
    )
    bad_sel = bad_sel.replace(
        "      labels:\n        app: web", "      labels:\n        app: other"
    )
    r = cluster.kubectl("apply", "-f", "-", input=bad_sel, check=False)
    assert r.returncode == 1 and "`selector` does not match template `labels`" in r.stderr
    r = cluster.kubectl(
        "create",
        "-f",
        "-",
        input="apiVersion: v1\nkind: ConfigMap\nmetadata: [broken\n",
        check=False,
    )
    assert r.returncode == 1
    for kind, name in (("pod", "Bad_Name"), ("pod", "badport"), ("deploy", "mismatched")):
        got = cluster.kubectl(
            "get", kind, name, "-n", "shop" if kind == "deploy" else "default", check=False
        )
        assert got.returncode == 1 and "NotFound" in got.stderr


def test_malformed_json_is_400(cluster) -> None:
    r = cluster.kubectl(
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        "-",
        input='{"metadata": {"name": "x"',
        check=False,
    )
    assert r.returncode == 1 and "BadRequest" in r.stderr or "400" in r.stderr


def test_kill9_loses_no_acknowledged_create(cluster) -> None:
    script = f"""
import subprocess, sys
for i in range(100000):
    r = subprocess.run(["/usr/bin/kubectl", "--kubeconfig={cluster.kubeconfig}", "create", "configmap",
                        f"ack-{{i}}", "--from-literal=i={{i}}"], capture_output=True, text=True)
    if r.returncode != 0:
        break
    print(f"ack-{{i}}", flush=True)
"""
    proc = subprocess.Popen(
        ["python3", "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **cluster._kubectl_env},
    )
    time.sleep(4)
    cluster.kill9()
    out, _ = proc.communicate(timeout=60)
    acked = [line for line in out.splitlines() if line.startswith("ack-")]
    assert acked, "no create was acknowledged before the kill"
    cluster.start()
    names = cluster.kubectl("get", "cm", "-o", "name").stdout.split()
    missing = [a for a in acked if f"configmap/{a}" not in names]
    assert missing == []
