"""Record the protobuf bodies the real kubectl 1.33 sends, as fixtures for test_protobuf.py.

Run once by hand (needs kubectl 1.33: the gcloud dispatcher's `kubectl.1.33` directly, as
the dispatcher itself falls back to 1.32 when its /version probe is slow; it is linked as
`kubectl` so that the User-Agent is kubectl's own):

    .venv/bin/python tests/api/protobuf_fixtures/capture.py

A small HTTP server answers /version and legacy discovery, serves the few objects that
`autoscale` and `create job --from` read, records every protobuf POST body and answers
with a small JSON object. Each case runs kubectl twice against it: for real (recording
`NAME.pb`) and, where kubectl supports it, with `--dry-run=client -o json` (recording
`NAME.json`, what a JSON client would have sent). Commands without a client dry run
(`create token`, `auth can-i`, `auth whoami`, `certificate approve`, `drain`) get a
hand-checked `NAME.json` instead (written from the decoder's output, then checked field by
field against the Go struct tags): this script records their `NAME.pb` only when that
JSON does not exist yet, so a checked pair stays consistent (delete both to re-record).
`cases.json` lists the commands and the User-Agent seen, so the fixtures say where they
came from.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

HERE = Path(__file__).parent
KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33"

GROUPS: dict[str, list[tuple[str, str, bool]]] = {
    # group/version -> [(plural, kind, namespaced)]
    "v1": [
        ("namespaces", "Namespace", False),
        ("nodes", "Node", False),
        ("pods", "Pod", True),
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("serviceaccounts/token", "TokenRequest", True),
        ("resourcequotas", "ResourceQuota", True),
    ],
    "apps/v1": [
        ("deployments", "Deployment", True),
        ("deployments/scale", "Scale", True),
    ],
    "batch/v1": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "autoscaling/v1": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "rbac.authorization.k8s.io/v1": [
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
    ],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "scheduling.k8s.io/v1": [("priorityclasses", "PriorityClass", False)],
    "networking.k8s.io/v1": [("ingresses", "Ingress", True)],
    "authentication.k8s.io/v1": [("selfsubjectreviews", "SelfSubjectReview", False)],
    "authorization.k8s.io/v1": [
        ("selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
        ("selfsubjectrulesreviews", "SelfSubjectRulesReview", False),
    ],
    "certificates.k8s.io/v1": [
        ("certificatesigningrequests", "CertificateSigningRequest", False),
        ("certificatesigningrequests/approval", "CertificateSigningRequest", False),
    ],
}

DEPLOYMENT = {
    "kind": "Deployment",
    "apiVersion": "apps/v1",
    "metadata": {"name": "web", "namespace": "default", "uid": "1"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
        },
    },
}
CRONJOB = {
    "kind": "CronJob",
    "apiVersion": "batch/v1",
    "metadata": {"name": "cj", "namespace": "default", "uid": "0f0e0d0c"},
    "spec": {
        "schedule": "*/5 * * * *",
        "jobTemplate": {
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "containers": [{"name": "c", "image": "busybox", "args": ["date"]}],
                    }
                }
            }
        },
    },
}
CSR = {
    "kind": "CertificateSigningRequest",
    "apiVersion": "certificates.k8s.io/v1",
    "metadata": {"name": "csr1", "uid": "c5r", "resourceVersion": "7"},
    "spec": {
        "request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
        "signerName": "kubernetes.io/kube-apiserver-client",
        "expirationSeconds": 86400,
        "usages": ["client auth"],
        "username": "alice",
        "groups": ["devs", "system:authenticated"],
    },
    "status": {},
}
NODE = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n1"}, "spec": {}}
POD = {
    "kind": "Pod",
    "apiVersion": "v1",
    "metadata": {"name": "p1", "namespace": "default", "uid": "p0d"},
    "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
    "status": {"phase": "Running"},
}
POD_PATH = "/api/v1/namespaces/default/pods/p1"
OBJECTS = {
    "/api/v1/nodes/n1": NODE,
    POD_PATH: POD,
    "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr1": CSR,
    "/apis/apps/v1/namespaces/default/deployments/web": DEPLOYMENT,
    "/apis/batch/v1/namespaces/default/cronjobs/cj": CRONJOB,
}
REPLY_STATUS: dict[str, dict[str, Any]] = {
    "TokenRequest": {"token": "t0ken", "expirationTimestamp": "2030-01-01T00:00:00Z"},
    "SelfSubjectAccessReview": {"allowed": True},
    "SelfSubjectRulesReview": {"resourceRules": [], "nonResourceRules": [], "incomplete": False},
    "SelfSubjectReview": {"userInfo": {"username": "alice", "groups": ["devs"]}},
}

# name -> (kubectl args, has a client dry run)
CASES: dict[str, tuple[list[str], bool]] = {
    "configmap": (["create", "configmap", "cm1", "--from-literal=a=b", "--from-literal=c="], True),
    "secret-generic": (
        ["create", "secret", "generic", "s1", "--from-literal=k=v", "--type=Opaque"],
        True,
    ),
    "secret-tls": (["create", "secret", "tls", "tls1", "--cert=@CERT", "--key=@KEY"], True),
    "secret-docker-registry": (
        [
            "create",
            "secret",
            "docker-registry",
            "reg",
            "--docker-username=u",
            "--docker-password=p",
            "--docker-server=example.com",
        ],
        True,
    ),
    "namespace": (["create", "namespace", "ns1"], True),
    "deployment": (
        ["create", "deployment", "web", "--image=nginx:1.27", "--replicas=3", "--port=80"],
        True,
    ),
    "deployment-zero-replicas": (
        ["create", "deployment", "idle", "--image=nginx", "--image=redis", "--replicas=0"],
        True,
    ),
    "job": (["create", "job", "j1", "--image=busybox", "--", "echo", "hi"], True),
    "job-from-cronjob": (["create", "job", "manual", "--from=cronjob/cj"], True),
    "cronjob": (
        [
            "create",
            "cronjob",
            "cj",
            "--image=busybox",
            "--schedule=*/1 * * * *",
            "--restart=Never",
            "--",
            "date",
        ],
        True,
    ),
    "service-clusterip": (["create", "service", "clusterip", "svc", "--tcp=80:8080"], True),
    "service-headless": (["create", "service", "clusterip", "hl", "--clusterip=None"], True),
    "service-nodeport": (
        ["create", "service", "nodeport", "np", "--tcp=80:http", "--node-port=30080"],
        True,
    ),
    "service-loadbalancer": (["create", "service", "loadbalancer", "lb", "--tcp=443"], True),
    "service-externalname": (
        ["create", "service", "externalname", "ext", "--external-name=example.com"],
        True,
    ),
    "serviceaccount": (["create", "serviceaccount", "sa1"], True),
    "quota": (
        ["create", "quota", "q1", "--hard=cpu=1,memory=1G,pods=2", "--scopes=BestEffort"],
        True,
    ),
    "role": (
        [
            "create",
            "role",
            "r1",
            "--verb=get,list",
            "--resource=pods,deployments.apps",
            "--resource-name=x",
        ],
        True,
    ),
    "rolebinding": (
        [
            "create",
            "rolebinding",
            "rb1",
            "--role=r1",
            "--user=alice",
            "--serviceaccount=default:sa1",
        ],
        True,
    ),
    "clusterrole": (
        [
            "create",
            "clusterrole",
            "cr1",
            "--verb=get",
            "--resource=nodes",
            "--non-resource-url=/healthz",
        ],
        True,
    ),
    "clusterrole-aggregated": (
        ["create", "clusterrole", "agg", "--aggregation-rule=rbac.example.com/aggregate=true"],
        True,
    ),
    "clusterrolebinding": (
        ["create", "clusterrolebinding", "crb", "--clusterrole=cr1", "--group=devs"],
        True,
    ),
    "pdb-percent": (
        ["create", "pdb", "pdb1", "--selector=app=web", "--min-available=50%"],
        True,
    ),
    "pdb-int": (["create", "pdb", "pdb2", "--selector=app=web", "--max-unavailable=0"], True),
    "priorityclass": (
        [
            "create",
            "priorityclass",
            "pc1",
            "--value=1000",
            "--description=x",
            "--preemption-policy=Never",
        ],
        True,
    ),
    "priorityclass-default": (
        ["create", "priorityclass", "pc0", "--value=0", "--global-default"],
        True,
    ),
    "ingress": (
        [
            "create",
            "ingress",
            "ing",
            "--class=nginx",
            "--rule=foo.com/bar*=svc1:8080,tls=my-cert",
            "--rule=/=svc2:http",
            "--annotation=a=b",
        ],
        True,
    ),
    "autoscale": (
        ["autoscale", "deployment", "web", "--min=2", "--max=5", "--cpu-percent=80"],
        True,
    ),
    "token": (["create", "token", "sa1", "--duration=1h", "--audience=api"], False),
    "token-bound": (
        [
            "create",
            "token",
            "sa1",
            "--bound-object-kind=Secret",
            "--bound-object-name=s1",
            "--bound-object-uid=42",
        ],
        False,
    ),
    "can-i": (["auth", "can-i", "get", "pods", "--subresource=log"], False),
    "whoami": (["auth", "whoami"], False),
    "can-i-list": (["auth", "can-i", "--list"], False),
    "certificate-approve": (["certificate", "approve", "csr1"], False),
    "drain-delete": (
        ["drain", "n1", "--disable-eviction", "--force", "--grace-period=5", "--timeout=20s"],
        False,
    ),
}


class Recorder(BaseHTTPRequestHandler):
    bodies: list[tuple[str, str, bytes, str]] = []  # (path, content type, body, user agent)
    pod_deleted = False  # drain polls the pod until it is gone

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, code: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?")[0]
        if path == "/version":
            self.reply(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.1"})
        elif path == "/api":
            self.reply(200, {"kind": "APIVersions", "versions": ["v1"]})
        elif path == "/apis":
            groups: dict[str, list[str]] = {}
            for gv in GROUPS:
                if "/" in gv:
                    g, v = gv.split("/")
                    groups.setdefault(g, []).append(v)
            self.reply(
                200,
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [
                        {
                            "name": g,
                            "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                            "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                        }
                        for g, vs in groups.items()
                    ],
                },
            )
        elif path in ("/api/v1", *(f"/apis/{gv}" for gv in GROUPS)):
            gv = path.removeprefix("/api/").removeprefix("/apis/")
            self.reply(
                200,
                {
                    "kind": "APIResourceList",
                    "groupVersion": gv,
                    "resources": [
                        {
                            "name": plural,
                            "singularName": "",
                            "namespaced": ns,
                            "kind": kind,
                            "verbs": ["create", "get", "list", "update", "patch", "delete"],
                        }
                        for plural, kind, ns in GROUPS[gv]
                    ],
                },
            )
        elif path == "/api/v1/pods":  # drain lists the node's pods
            items = [] if Recorder.pod_deleted else [POD]
            self.reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
        elif path in OBJECTS and not (path == POD_PATH and Recorder.pod_deleted):
            self.reply(200, OBJECTS[path])
        else:
            self.reply(
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                    "message": f"{path} not found",
                },
            )

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ctype = self.headers.get("Content-Type", "")
        Recorder.bodies.append((self.path, ctype, body, self.headers.get("User-Agent", "")))
        kind = next(
            (k for k in REPLY_STATUS if k.lower() in self.path.replace("/token", "/tokenrequest")),
            "",
        )
        reply: dict[str, Any] = {"metadata": {"name": "x", "namespace": "default"}}
        if kind:
            reply |= {"kind": kind, "status": REPLY_STATUS[kind]}
        self.reply(201, reply)

    def do_PATCH(self) -> None:  # noqa: N802
        """drain cordons the node first (a JSON patch, not recorded)."""
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.reply(200, NODE)

    def do_DELETE(self) -> None:  # noqa: N802
        """`drain --disable-eviction` deletes pods with a protobuf DeleteOptions."""
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ctype = self.headers.get("Content-Type", "")
        Recorder.bodies.append((self.path, ctype, body, self.headers.get("User-Agent", "")))
        Recorder.pod_deleted = True
        self.reply(200, POD)

    def do_PUT(self) -> None:  # noqa: N802
        """`certificate approve` PUTs the whole CSR to .../approval."""
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ctype = self.headers.get("Content-Type", "")
        Recorder.bodies.append((self.path, ctype, body, self.headers.get("User-Agent", "")))
        self.reply(200, OBJECTS.get(self.path.split("?")[0].removesuffix("/approval"), {}))


def tls_files(tmp: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate; a fixed Ed25519 key and dates keep it stable."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fixture")])
    start = datetime.datetime(2025, 1, 1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(key, None)
    )
    cert_path, key_path = tmp / "tls.crt", tmp / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    manifest: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = tls_files(Path(tmp))
        kubectl = Path(tmp) / "kubectl"
        kubectl.symlink_to(KUBECTL)
        base = [str(kubectl), f"--server={url}", f"--cache-dir={tmp}/cache", "-n", "default"]
        failed = []
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "KUBECONFIG": f"{tmp}/none"}
        for name, (args, dry_run) in CASES.items():
            args = [a.replace("@CERT", str(cert)).replace("@KEY", str(key)) for a in args]
            Recorder.bodies.clear()
            Recorder.pod_deleted = False
            run = subprocess.run(base + args, env=env, capture_output=True, text=True)
            posts = [b for b in Recorder.bodies if b[1].startswith("application/vnd.kubernetes")]
            if run.returncode != 0 or len(posts) != 1 or "kubectl/v1.33." not in posts[0][3]:
                print(f"{name}: rc={run.returncode} posts={posts} {run.stderr.strip()}")
                failed.append(name)
                continue
            path, ctype, body, agent = posts[0]
            if dry_run or not (HERE / f"{name}.json").exists():
                (HERE / f"{name}.pb").write_bytes(body)
            if dry_run:
                cut = args.index("--") if "--" in args else len(args)
                out = subprocess.run(
                    base + args[:cut] + ["--dry-run=client", "-o", "json"] + args[cut:],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                expected = json.loads(out.stdout)
                (HERE / f"{name}.json").write_text(json.dumps(expected, indent=2) + "\n")
            manifest[name] = {
                "kubectl": CASES[name][0],
                "path": path,
                "contentType": ctype,
                "userAgent": agent,
                "expected": "kubectl --dry-run=client -o json" if dry_run else "hand-checked",
            }
            print(f"{name}: {len(body)} bytes to {path}")
    server.shutdown()
    if failed:
        print("not all cases captured, cases.json left alone:", failed)
        return 1
    (HERE / "cases.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
