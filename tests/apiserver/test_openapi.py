"""The served OpenAPI v3: the index and its content hashes, the paths and operations
kubectl reads (fieldValidation on every PATCH, patch content types, GVK objects on
operations and GVK arrays on schemas), the converted schemas, custom resources,
caching and invalidation; and the real kubectl's `explain`, `create -f` and
`apply -f` against a tiny server that serves only discovery and these documents."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from nanokube.api.kinds import Kind, Registry, Scale
from nanokube.apiserver import openapi

WIDGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "description": "What the widget should be.",
            "properties": {"size": {"type": "integer", "description": "How big the widget is."}},
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}
POD = Kind("", "v1", "Pod", "pods", True, short_names=("po",), subresources=("status", "log"))
DEPLOYMENT = Kind(
    "apps", "v1", "Deployment", "deployments", True, short_names=("deploy",),
    subresources=("status", "scale"), scale=Scale(),
)  # fmt: skip
KINDS = [
    POD,
    Kind("", "v1", "ConfigMap", "configmaps", True, short_names=("cm",)),
    Kind("", "v1", "Namespace", "namespaces", False, subresources=("status",)),
    Kind("", "v1", "Node", "nodes", False, subresources=("status",)),
    DEPLOYMENT,
    Kind("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    Kind(
        "example.com",
        "v1",
        "Widget",
        "widgets",
        True,
        subresources=("status",),
        custom_schema=WIDGET_SCHEMA,
    ),
]
OPS = ("get", "put", "post", "patch", "delete")


def document(registry: Registry, path: str) -> dict[str, Any]:
    body = openapi.v3_document(registry, path)
    assert body is not None, path
    result: dict[str, Any] = orjson.loads(body)
    return result


@pytest.fixture
def registry() -> Registry:
    return Registry(KINDS)


# --- index ------------------------------------------------------------------------------


def test_index_lists_every_group_version_with_a_hash(registry: Registry) -> None:
    paths = orjson.loads(openapi.v3_index(registry))["paths"]
    assert set(paths) == {
        "api", "api/v1", "apis", "apis/apps", "apis/apps/v1", "apis/example.com", "apis/example.com/v1",
        "apis/rbac.authorization.k8s.io", "apis/rbac.authorization.k8s.io/v1",
    }  # fmt: skip
    url = paths["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=") and len(url.split("=")[1]) == 128
    for path in paths:
        assert openapi.v3_document(registry, path) is not None
    assert openapi.v3_document(registry, "apis/nope/v1") is None


def test_hash_changes_exactly_when_a_document_changes(registry: Registry) -> None:
    before = orjson.loads(openapi.v3_index(registry))["paths"]
    core = openapi.v3_document(registry, "api/v1")
    gadget = Kind("example.com", "v1", "Gadget", "gadgets", False, custom_schema={"type": "object"})
    registry.add(gadget)
    after = orjson.loads(openapi.v3_index(registry))["paths"]
    assert after["api/v1"] == before["api/v1"]
    assert openapi.v3_document(registry, "api/v1") is core  # cached, not rebuilt
    assert after["apis/example.com/v1"] != before["apis/example.com/v1"]
    assert (
        "/apis/example.com/v1/gadgets/{name}" in document(registry, "apis/example.com/v1")["paths"]
    )
    registry.remove(gadget)
    assert orjson.loads(openapi.v3_index(registry))["paths"] == before


# --- paths and operations ---------------------------------------------------------------


def test_namespaced_paths_are_upstreams(registry: Registry) -> None:
    paths = document(registry, "apis/apps/v1")["paths"]
    base = "/apis/apps/v1/namespaces/{namespace}/deployments"
    assert set(paths) == {
        "/apis/apps/v1/", "/apis/apps/v1/deployments", base, base + "/{name}",
        base + "/{name}/status", base + "/{name}/scale",
    }  # fmt: skip
    assert set(paths[base]) == {"get", "post", "delete", "parameters"}
    assert set(paths[base + "/{name}"]) == {"get", "put", "patch", "delete", "parameters"}
    assert paths[base + "/{name}"]["patch"]["operationId"] == "patchAppsV1NamespacedDeployment"
    assert paths[base]["delete"]["x-kubernetes-action"] == "deletecollection"
    assert [p["name"] for p in paths[base + "/{name}"]["parameters"]] == [
        "name",
        "namespace",
        "pretty",
    ]


def test_cluster_scoped_paths(registry: Registry) -> None:
    paths = document(registry, "api/v1")["paths"]
    assert {"/api/v1/nodes", "/api/v1/nodes/{name}", "/api/v1/nodes/{name}/status"} <= set(paths)
    assert "/api/v1/namespaces/{namespace}/nodes" not in paths
    assert paths["/api/v1/namespaces/{name}"]["get"]["operationId"] == "readCoreV1Namespace"
    assert "/api/v1/pods" in paths and "/api/v1/namespaces/{namespace}/pods/{name}/status" in paths


def test_every_patch_op_declares_field_validation_and_patch_types(registry: Registry) -> None:
    for gv in (
        "api/v1",
        "apis/apps/v1",
        "apis/example.com/v1",
        "apis/rbac.authorization.k8s.io/v1",
    ):
        for path, item in document(registry, gv)["paths"].items():
            if "patch" not in item:
                continue
            op = item["patch"]
            assert {"name": "fieldValidation", "in": "query"}.items() <= op["parameters"][
                2
            ].items(), path
            content = set(op["requestBody"]["content"])
            assert {
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            } <= content
            assert ("application/strategic-merge-patch+json" in content) == (
                gv != "apis/example.com/v1"
            ), path


def test_operations_carry_a_gvk_object(registry: Registry) -> None:
    paths = document(registry, "apis/apps/v1")["paths"]
    item = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    for op in ("get", "put", "patch", "delete"):
        assert item[op]["x-kubernetes-group-version-kind"] == {
            "group": "apps",
            "kind": "Deployment",
            "version": "v1",
        }
    scale = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling",
        "kind": "Scale",
        "version": "v1",
    }
    assert scale["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/io.k8s.api.autoscaling.v1.Scale"
    }


# --- schemas ----------------------------------------------------------------------------


def test_schemas_are_converted_like_upstreams(registry: Registry) -> None:
    schemas = document(registry, "apis/apps/v1")["components"]["schemas"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    assert deployment["properties"]["kind"] == {
        "description": deployment["properties"]["kind"]["description"],
        "type": "string",
    }
    assert deployment["properties"]["spec"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}
    ]
    replicas = schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"]
    assert replicas["type"] == "integer" and replicas["format"] == "int32"
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    int_or_string = schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert int_or_string["oneOf"] == [{"type": "integer"}, {"type": "string"}]
    assert schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]["oneOf"] == [
        {"type": "string"},
        {"type": "number"},
    ]
    for name in ("Status", "DeleteOptions", "Patch", "WatchEvent", "ObjectMeta", "APIResourceList"):
        assert "io.k8s.apimachinery.pkg.apis.meta.v1." + name in schemas
    assert (
        "io.k8s.api.apps.v1.DeploymentList" in schemas
        and "io.k8s.api.autoscaling.v1.Scale" in schemas
    )
    refs = {r for r in _refs(schemas)}
    assert {"#/components/schemas/" + name for name in schemas} >= refs  # closed under $ref
    assert "#/$defs/" not in orjson.dumps(schemas).decode()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_custom_resource_schema_is_named_like_upstream(registry: Registry) -> None:
    schemas = document(registry, "apis/example.com/v1")["components"]["schemas"]
    widget = schemas["com.example.v1.Widget"]
    assert widget["x-kubernetes-group-version-kind"] == [
        {"group": "example.com", "kind": "Widget", "version": "v1"}
    ]
    assert widget["properties"]["spec"]["properties"]["size"]["type"] == "integer"
    assert widget["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    ]
    assert "com.example.v1.WidgetList" in schemas
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in schemas


# --- the real kubectl ---------------------------------------------------------------------

KUBECTL = Path("/usr/lib/google-cloud-sdk/bin/kubectl.1.33")
needs_kubectl = pytest.mark.skipif(not KUBECTL.exists(), reason=f"{KUBECTL} is not installed")


def _discovery(kinds: list[Kind]) -> dict[str, Any]:
    """Legacy discovery, just enough for kubectl to map resources to kinds."""
    docs: dict[str, Any] = {
        "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    }
    groups: dict[str, dict[str, Any]] = {}
    for k in kinds:
        gv = k.api_version
        resources = docs.setdefault(
            f"/apis/{gv}" if k.group else f"/api/{gv}",
            {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": []},
        )["resources"]
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        resources.append({"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced, "kind": k.kind, "verbs": verbs, "shortNames": list(k.short_names)})  # fmt: skip
        if k.group:
            version = {"groupVersion": gv, "version": k.version}
            groups[k.group] = {"name": k.group, "versions": [version], "preferredVersion": version}
    docs["/apis"] = {"kind": "APIGroupList", "apiVersion": "v1", "groups": list(groups.values())}
    return docs


class FakeServer:
    """Discovery + OpenAPI from nanokube, objects echoed back; requests recorded."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.docs = _discovery(list(registry))
        self.requests: list[
            tuple[str, str, str, bytes]
        ] = []  # method, path?query, content type, body
        self.objects: dict[str, Any] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((request.method, request.path_qs, request.content_type, body))
        path = request.path
        if path == "/version":
            return web.json_response({"major": "1", "minor": "33", "gitVersion": "v1.33.1"})
        if path in self.docs:
            return web.json_response(self.docs[path])
        if path == "/openapi/v3":
            return web.Response(
                body=openapi.v3_index(self.registry), content_type="application/json"
            )
        if path.startswith("/openapi/v3/"):
            doc = openapi.v3_document(self.registry, path[len("/openapi/v3/") :])
            if doc is not None:
                return web.Response(body=doc, content_type="application/json")
        if request.method == "POST":
            obj = orjson.loads(body)
            return web.Response(status=201, body=orjson.dumps(obj), content_type="application/json")
        if request.method == "GET" and path in self.objects:
            return web.json_response(self.objects[path])
        if request.method == "PATCH" and path in self.objects:
            return web.json_response(self.objects[path])
        status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}  # fmt: skip
        return web.json_response(status, status=404)


@pytest.fixture
async def fake(registry: Registry, tmp_path: Path) -> AsyncIterator[tuple[FakeServer, str]]:
    server = FakeServer(registry)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield server, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def kubectl(server: str, tmp_path: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        str(KUBECTL), f"--server={server}", f"--cache-dir={tmp_path / 'cache'}", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    return proc.returncode or 0, out.decode(), err.decode()


@needs_kubectl
async def test_kubectl_explain_reads_the_documents(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    _, url = fake
    rc, out, err = await kubectl(url, tmp_path, "explain", "pod.spec.containers.ports")
    assert rc == 0, err
    assert "KIND:       Pod" in out and "FIELD: ports <[]ContainerPort>" in out
    assert "containerPort\t<integer> -required-" in out
    rc, out, err = await kubectl(url, tmp_path, "explain", "deploy.spec.replicas")
    assert rc == 0, err
    assert "GROUP:      apps" in out and "FIELD: replicas <integer>" in out
    rc, out, err = await kubectl(url, tmp_path, "explain", "deploy.spec.strategy.rollingUpdate")
    assert rc == 0, err
    assert "maxSurge\t<IntOrString>" in out
    rc, out, err = await kubectl(url, tmp_path, "explain", "pods.spec.containers.resources")
    assert rc == 0, err
    assert "limits\t<map[string]Quantity>" in out
    rc, out, err = await kubectl(url, tmp_path, "explain", "nodes")
    assert rc == 0, err
    assert "Node is a worker node in Kubernetes." in out
    rc, out, err = await kubectl(url, tmp_path, "explain", "widgets.spec")
    assert rc == 0, err
    assert (
        "GROUP:      example.com" in out
        and "size\t<integer>" in out
        and "How big the widget is." in out
    )


DEPLOYMENT_YAML = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: nginx:1.25}, {name: sidecar, image: busybox}]
"""


@needs_kubectl
async def test_kubectl_uses_server_side_field_validation(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    rc, out, err = await kubectl(url, tmp_path, "create", "-f", "-", stdin=DEPLOYMENT_YAML)
    assert rc == 0, err
    posts = [r for r in server.requests if r[0] == "POST"]
    assert posts and "fieldValidation=Strict" in posts[0][1]


@needs_kubectl
async def test_kubectl_apply_builds_a_strategic_merge_patch_from_v3(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    live = orjson.loads(orjson.dumps(_yaml_deployment()))
    live["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": orjson.dumps(live).decode()
    }
    live["metadata"]["resourceVersion"] = "1"
    server.objects["/apis/apps/v1/namespaces/default/deployments/web"] = live
    rc, out, err = await kubectl(
        url,
        tmp_path,
        "apply",
        "-f",
        "-",
        stdin=DEPLOYMENT_YAML.replace("replicas: 2", "replicas: 3"),
    )
    assert rc == 0, err
    patches = [r for r in server.requests if r[0] == "PATCH"]
    assert len(patches) == 1
    assert patches[0][2] == "application/strategic-merge-patch+json"
    assert "fieldValidation=Strict" in patches[0][1]
    assert orjson.loads(patches[0][3])["spec"]["replicas"] == 3


def _yaml_deployment() -> dict[str, Any]:
    import yaml

    result: dict[str, Any] = yaml.safe_load(DEPLOYMENT_YAML)
    return result


WIDGET_YAML = """
apiVersion: example.com/v1
kind: Widget
metadata: {name: w, namespace: default}
spec: {size: 2}
"""


@needs_kubectl
async def test_kubectl_apply_sends_custom_resources_a_merge_patch(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    live: dict[str, Any] = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default", "resourceVersion": "1"},
        "spec": {"size": 2},
    }
    applied = {k: v for k, v in live.items() if k != "metadata"}
    applied["metadata"] = {"name": "w", "namespace": "default"}
    live["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": orjson.dumps(applied).decode()
    }
    server.objects["/apis/example.com/v1/namespaces/default/widgets/w"] = live
    rc, out, err = await kubectl(
        url, tmp_path, "apply", "-f", "-", stdin=WIDGET_YAML.replace("size: 2", "size: 5")
    )
    assert rc == 0, err
    patches = [r for r in server.requests if r[0] == "PATCH"]
    assert [p[2] for p in patches] == ["application/merge-patch+json"]
    assert "fieldValidation=Strict" in patches[0][1]
    assert orjson.loads(patches[0][3])["spec"] == {"size": 5}
