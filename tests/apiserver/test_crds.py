"""Custom resources served from CRDs, over HTTP against the real server.

Aspects: the CRD's status (NamesAccepted, Established, acceptedNames,
storedVersions) and name conflicts; the kind in legacy and aggregated
discovery and OpenAPI; CRUD, merge and JSON patches (strategic refused with
415); schema validation (422 with the field), pruning per fieldValidation,
defaults; generation; the status and scale subresources; printer columns in
tables; the cleanup finalizer (objects deleted, creates refused meanwhile,
objects' own finalizers waited for); CRDs served again after a restart.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import aiohttp
import orjson
from support import free_port

from nanokube.apiserver.server import APIServerConfig, start
from nanokube.storage.memory import MemoryStore

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"

WIDGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "size": {"type": "integer", "minimum": 1, "default": 1},
                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                "replicas": {"type": "integer"},
                "options": {
                    "type": "object",
                    "default": {},
                    "properties": {"fast": {"type": "boolean", "default": False}},
                },
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "replicas": {"type": "integer"},
                "selector": {"type": "string"},
                "conditions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"type": {"type": "string"}, "status": {"type": "string"}},
                    },
                },
            },
        },
    },
}


def widget_crd(name: str = "widgets", kind: str = "Widget", **names: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{name}.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": name, "kind": kind, **names},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": copy.deepcopy(WIDGET_SCHEMA)},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                        {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {
                            "name": "Fast",
                            "type": "boolean",
                            "priority": 1,
                            "description": "goes fast",
                            "jsonPath": ".spec.options.fast",
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                }
            ],
        },
    }


def widget(name: str = "w1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


async def eventually(check: Any, timeout: float = 5.0) -> Any:
    """Poll `check()` (async) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.02)


async def established(client, name: str = "widgets.example.com") -> dict[str, Any]:
    async def check() -> Any:
        status, crd = await client.get(f"{CRDS}/{name}")
        conditions = (crd.get("status") or {}).get("conditions") or []
        ok = any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
        return crd if status == 200 and ok else None

    crd = await eventually(check)
    assert crd, f"CRD {name} not established"
    return crd


async def create_crd(client, crd: dict[str, Any] | None = None) -> dict[str, Any]:
    crd = crd or widget_crd()
    status, body = await client.post(CRDS, crd)
    assert status == 201, body
    return await established(client, crd["metadata"]["name"])


# --- the CRD and discovery -------------------------------------------------------------------


async def test_crd_status_names_and_conditions(client) -> None:
    crd = await create_crd(client, widget_crd(shortNames=["wd"], categories=["all"]))
    status = crd["status"]
    assert status["acceptedNames"] == {
        "plural": "widgets",
        "singular": "widget",
        "shortNames": ["wd"],
        "kind": "Widget",
        "listKind": "WidgetList",
        "categories": ["all"],
    }
    assert status["storedVersions"] == ["v1"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["NamesAccepted"]["status"] == "True"
    assert conditions["NamesAccepted"]["reason"] == "NoConflicts"
    assert conditions["Established"]["reason"] == "InitialNamesAccepted"
    assert conditions["Established"]["lastTransitionTime"]
    assert "finalizers" not in crd["metadata"]  # added only when deleted, as upstream


async def test_kind_in_legacy_and_aggregated_discovery(client) -> None:
    await create_crd(client, widget_crd(shortNames=["wd"]))
    status, groups = await client.get("/apis")
    entry = next(g for g in groups["groups"] if g["name"] == "example.com")
    assert entry["preferredVersion"] == {"groupVersion": "example.com/v1", "version": "v1"}
    status, resources = await client.get("/apis/example.com/v1")
    assert status == 200
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["widgets"]["kind"] == "Widget"
    assert by_name["widgets"]["namespaced"] is True
    assert by_name["widgets"]["shortNames"] == ["wd"]
    assert by_name["widgets/scale"]["kind"] == "Scale"
    assert "widgets/status" in by_name
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    status, agg = await client.get("/apis", headers={"Accept": accept})
    group = next(i for i in agg["items"] if i["metadata"]["name"] == "example.com")
    res = group["versions"][0]["resources"][0]
    assert res["resource"] == "widgets" and res["scope"] == "Namespaced"
    assert {s["subresource"] for s in res["subresources"]} == {"status", "scale"}
    status, index = await client.get("/openapi/v3")
    assert "apis/example.com/v1" in index["paths"]
    status, doc = await client.get("/openapi/v3/apis/example.com/v1")
    assert status == 200 and "com.example.v1.Widget" in doc["components"]["schemas"]


async def test_conflicting_names_are_not_accepted(client) -> None:
    await create_crd(client)
    other = widget_crd("gadgets", "Widget", singular="gadget")
    status, _ = await client.post(CRDS, other)
    assert status == 201

    async def check() -> Any:
        _, crd = await client.get(f"{CRDS}/gadgets.example.com")
        conditions = {c["type"]: c for c in (crd.get("status") or {}).get("conditions") or []}
        return conditions if "NamesAccepted" in conditions else None

    conditions = await eventually(check)
    assert conditions["NamesAccepted"]["status"] == "False"
    assert conditions["NamesAccepted"]["reason"] == "KindConflict"
    assert conditions["NamesAccepted"]["message"] == '"Widget" is already in use'
    assert conditions["Established"]["status"] == "False"
    status, _ = await client.get("/apis/example.com/v1/namespaces/default/gadgets")
    assert status == 404


# --- custom resources ----------------------------------------------------------------------


async def test_crud_defaults_and_generation(client) -> None:
    await create_crd(client)
    status, created = await client.post(WIDGETS, widget(size=3))
    assert status == 201, created
    assert created["spec"] == {"size": 3, "color": "red", "options": {"fast": False}}
    assert created["metadata"]["generation"] == 1
    assert created["apiVersion"] == "example.com/v1" and created["kind"] == "Widget"
    status, got = await client.get(f"{WIDGETS}/w1")
    assert status == 200 and got == created
    status, listed = await client.get(WIDGETS)
    assert listed["kind"] == "WidgetList" and [i["metadata"]["name"] for i in listed["items"]] == [
        "w1"
    ]
    status, listed = await client.get("/apis/example.com/v1/widgets")  # all namespaces
    assert len(listed["items"]) == 1
    got["spec"]["size"] = 4
    status, updated = await client.put(f"{WIDGETS}/w1", got)
    assert status == 200 and updated["metadata"]["generation"] == 2
    status, patched = await client.patch(f"{WIDGETS}/w1", {"spec": {"color": "blue"}}, MERGE)
    assert status == 200 and patched["spec"]["color"] == "blue"
    assert patched["metadata"]["generation"] == 3
    ops = [{"op": "replace", "path": "/spec/size", "value": 7}]
    status, patched = await client.patch(f"{WIDGETS}/w1", ops, JSON_PATCH)
    assert status == 200 and patched["spec"]["size"] == 7
    assert patched["metadata"]["generation"] == 4
    status, err = await client.patch(f"{WIDGETS}/w1", {"spec": {"size": 1}}, STRATEGIC)
    assert status == 415 and err["reason"] == "UnsupportedMediaType"
    status, _ = await client.patch(f"{WIDGETS}/w1", {"metadata": {"labels": {"a": "b"}}}, MERGE)
    status, same = await client.get(f"{WIDGETS}/w1")
    assert same["metadata"]["generation"] == 4  # metadata changes are no new generation
    status, _ = await client.delete(f"{WIDGETS}/w1")
    assert status == 200
    status, _ = await client.get(f"{WIDGETS}/w1")
    assert status == 404


async def test_schema_violations_are_422_with_the_field(client) -> None:
    await create_crd(client)
    status, err = await client.post(WIDGETS, widget(size="big"))
    assert status == 422 and err["reason"] == "Invalid"
    assert err["details"]["causes"] == [
        {
            "reason": "FieldValueTypeInvalid",
            "message": 'Invalid value: "string": spec.size in body must be of type integer: "string"',
            "field": "spec.size",
        }
    ]
    assert err["message"].startswith('Widget.example.com "w1" is invalid: spec.size')
    status, err = await client.post(WIDGETS, widget(color="green"))
    assert status == 422
    assert err["details"]["causes"][0]["field"] == "spec.color"
    assert 'supported values: "red", "blue"' in err["details"]["causes"][0]["message"]
    status, err = await client.post(WIDGETS, widget(size=0))
    assert status == 422 and err["details"]["causes"][0]["field"] == "spec.size"
    status, err = await client.post(WIDGETS, widget("Bad_Name"))
    assert status == 422 and err["details"]["causes"][0]["field"] == "metadata.name"
    status, _ = await client.get(WIDGETS)
    status, listed = await client.get(WIDGETS)
    assert listed["items"] == []


async def test_unknown_fields_pruned_warned_or_refused(client) -> None:
    await create_crd(client)
    status, err = await client.post(WIDGETS + "?fieldValidation=Strict", widget(size=1, bogus=1))
    assert status == 400 and 'unknown field "spec.bogus"' in err["message"]
    status, body, resp = await client.request(
        "POST", WIDGETS + "?fieldValidation=Warn", widget(size=1, bogus=1)
    )
    assert status == 201 and "bogus" not in body["spec"]
    assert 'unknown field \\"spec.bogus\\"' in resp.headers["Warning"]
    status, body = await client.post(WIDGETS + "?fieldValidation=Ignore", {**widget("w2"), "x": 1})
    assert status == 201 and "x" not in body


async def test_status_subresource_split(client) -> None:
    await create_crd(client)
    obj = widget(size=2)
    obj["status"] = {"replicas": 5}
    status, created = await client.post(WIDGETS, obj)
    assert "status" not in created  # status is not taken on create
    created["status"] = {"replicas": 5}
    created["spec"]["size"] = 9
    status, updated = await client.put(f"{WIDGETS}/w1", created)
    assert status == 200 and "status" not in updated and updated["spec"]["size"] == 9
    body = {"status": {"replicas": 2, "conditions": [{"type": "Ready", "status": "True"}]}}
    body["spec"] = {"size": 1}
    status, updated = await client.patch(f"{WIDGETS}/w1/status", body, MERGE)
    assert status == 200 and updated["status"]["replicas"] == 2
    assert updated["spec"]["size"] == 9  # /status keeps the spec
    assert updated["metadata"]["generation"] == 2


async def test_scale_subresource(client) -> None:
    await create_crd(client)
    await client.post(WIDGETS, widget(replicas=2))
    status_body = {"status": {"replicas": 2, "selector": "app=w"}}
    await client.patch(f"{WIDGETS}/w1/status", status_body, MERGE)
    status, scale = await client.get(f"{WIDGETS}/w1/scale")
    assert status == 200
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 2, "selector": "app=w"}
    status, scale = await client.patch(f"{WIDGETS}/w1/scale", {"spec": {"replicas": 5}}, MERGE)
    assert status == 200 and scale["spec"]["replicas"] == 5
    scale["spec"]["replicas"] = 6
    status, scale = await client.put(f"{WIDGETS}/w1/scale", scale)
    assert status == 200 and scale["spec"]["replicas"] == 6
    status, got = await client.get(f"{WIDGETS}/w1")
    assert got["spec"]["replicas"] == 6


async def test_printer_columns_in_tables(client) -> None:
    await create_crd(client)
    await client.post(WIDGETS, widget(size=3, color="blue"))
    ready = {"status": {"conditions": [{"type": "Other"}, {"type": "Ready", "status": "True"}]}}
    await client.patch(f"{WIDGETS}/w1/status", ready, MERGE)
    await client.post(WIDGETS, widget("w2"))
    status, table = await client.get(WIDGETS, headers={"Accept": TABLE})
    assert status == 200 and table["kind"] == "Table"
    columns = [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]]
    assert columns == [
        ("Name", "string", 0),
        ("Size", "integer", 0),
        ("Color", "string", 0),
        ("Ready", "string", 0),
        ("Fast", "boolean", 1),
        ("Age", "date", 0),
    ]
    descriptions = {c["name"]: c["description"] for c in table["columnDefinitions"]}
    assert descriptions["Fast"] == "goes fast"
    assert (
        descriptions["Size"] == "Custom resource definition column (in JSONPath format): .spec.size"
    )
    first, second = (r["cells"] for r in table["rows"])
    assert first[:5] == ["w1", 3, "blue", "True", False]
    assert second[:5] == ["w2", 1, "red", None, False]
    assert first[5].endswith("s")  # an age: 0s, 1s
    status, table = await client.get(f"{WIDGETS}/w1", headers={"Accept": TABLE})
    assert [r["cells"][0] for r in table["rows"]] == ["w1"]


async def test_default_columns_and_generation_without_status(client) -> None:
    crd = widget_crd("gizmos", "Gizmo")
    version = crd["spec"]["versions"][0]
    del version["subresources"], version["additionalPrinterColumns"]
    crd["spec"]["scope"] = "Cluster"
    await create_crd(client, crd)
    path = "/apis/example.com/v1/gizmos"
    status, created = await client.post(path, {"metadata": {"name": "g"}, "spec": {}})
    assert status == 201 and created["metadata"]["generation"] == 1
    assert "namespace" not in created["metadata"]
    created["status"] = {"replicas": 1}  # no status subresource: status is ordinary content
    status, updated = await client.put(f"{path}/g", created)
    assert updated["status"] == {"replicas": 1} and updated["metadata"]["generation"] == 2
    status, _ = await client.get(f"{path}/g/status")
    assert status == 404
    status, table = await client.get(path, headers={"Accept": TABLE})
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    assert table["columnDefinitions"][1]["type"] == "date"


async def test_watch_custom_resources(client) -> None:
    await create_crd(client)
    await client.post(WIDGETS, widget())
    status, text, _ = await client.request("GET", WIDGETS + "?watch=true&timeoutSeconds=1")
    assert status == 200
    lines = text if isinstance(text, dict) else None
    events = [lines] if lines else [orjson.loads(x) for x in text.splitlines() if x]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "w1")]


# --- deletion ------------------------------------------------------------------------------


async def test_crd_deletion_removes_objects_and_kind(client) -> None:
    await create_crd(client)
    for name in ("w1", "w2"):
        status, _ = await client.post(WIDGETS, widget(name))
        assert status == 201
    status, deleted = await client.delete(f"{CRDS}/widgets.example.com")
    assert status == 200
    assert "customresourcecleanup.apiextensions.k8s.io" in deleted["metadata"]["finalizers"]

    async def gone() -> bool:
        status, _ = await client.get(f"{CRDS}/widgets.example.com")
        return status == 404

    assert await eventually(gone)
    status, _ = await client.get(WIDGETS)
    assert status == 404
    status, _ = await client.get("/apis/example.com/v1")
    assert status == 404
    status, groups = await client.get("/apis")
    assert "example.com" not in [g["name"] for g in groups["groups"]]
    # Recreated, the CRD starts empty: the objects were deleted, not orphaned.
    await create_crd(client)
    status, listed = await client.get(WIDGETS)
    assert status == 200 and listed["items"] == []


async def test_terminating_crd_waits_for_object_finalizers(client) -> None:
    await create_crd(client)
    held = widget("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    await client.post(WIDGETS, held)
    await client.delete(f"{CRDS}/widgets.example.com")

    async def terminating() -> Any:
        _, crd = await client.get(f"{CRDS}/widgets.example.com")
        conditions = {c["type"]: c for c in (crd.get("status") or {}).get("conditions") or []}
        c = conditions.get("Terminating")
        return c if c and c["reason"] == "InstanceDeletionCheck" else None

    condition = await eventually(terminating)
    assert condition["status"] == "True"
    # Waiting writes nothing more: the controller does not spin on its own status writes.
    _, before = await client.get(f"{CRDS}/widgets.example.com")
    await asyncio.sleep(0.3)
    _, after = await client.get(f"{CRDS}/widgets.example.com")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    status, err = await client.post(WIDGETS, widget("new"))
    assert status == 405 and err["reason"] == "MethodNotAllowed"
    assert err["message"] == "create not allowed while custom resource definition is terminating"
    status, obj = await client.get(f"{WIDGETS}/held")
    assert status == 200 and obj["metadata"]["deletionTimestamp"]
    await client.patch(f"{WIDGETS}/held", {"metadata": {"finalizers": None}}, MERGE)

    async def gone() -> bool:
        status, _ = await client.get(f"{CRDS}/widgets.example.com")
        return status == 404

    assert await eventually(gone)


async def test_crds_served_again_after_restart() -> None:
    store = MemoryStore()
    first, runner = await start(APIServerConfig(store=store, port=free_port()))
    try:
        crd = orjson.dumps(widget_crd())
        async with aiohttp.ClientSession(f"http://127.0.0.1:{first.config.port}") as session:
            json = {"Content-Type": "application/json"}
            async with session.post(CRDS, data=crd, headers=json):
                pass
            for _ in range(250):
                kind = first.registry.by_resource("example.com", "v1", "widgets")
                if kind is not None:
                    break
                await asyncio.sleep(0.02)
            body = orjson.dumps(widget())
            async with session.post(WIDGETS, data=body, headers=json) as resp:
                assert resp.status == 201
    finally:
        await first.cache.stop()
        await runner.cleanup()
    second, runner = await start(APIServerConfig(store=store, port=free_port()))
    try:
        # Served as soon as start() returns: no waiting for the controller.
        assert second.registry.by_resource("example.com", "v1", "widgets") is not None
        async with aiohttp.ClientSession(f"http://127.0.0.1:{second.config.port}") as session:
            async with session.get(f"{WIDGETS}/w1") as resp:
                assert resp.status == 200
                assert (await resp.json())["spec"]["color"] == "red"
    finally:
        await second.cache.stop()
        await runner.cleanup()


async def test_versions_and_updates_of_the_crd(client) -> None:
    crd = widget_crd()
    beta = copy.deepcopy(crd["spec"]["versions"][0])
    beta.update(name="v1beta1", storage=False, additionalPrinterColumns=[])
    crd["spec"]["versions"].append(beta)
    crd = await create_crd(client, crd)
    status, group = await client.get("/apis/example.com")
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    assert group["preferredVersion"]["version"] == "v1"
    beta_path = "/apis/example.com/v1beta1/namespaces/default/widgets"
    status, created = await client.post(
        beta_path, {**widget(), "apiVersion": "example.com/v1beta1"}
    )
    assert status == 201
    status, got = await client.get(f"{WIDGETS}/w1")  # one storage for every version
    assert status == 200 and got["metadata"]["uid"] == created["metadata"]["uid"]
    # The CRD changes: v1beta1 is no longer served, v1 gets a new column.
    crd["spec"]["versions"][1]["served"] = False
    crd["spec"]["versions"][0]["additionalPrinterColumns"] = [
        {"name": "Big", "type": "boolean", "jsonPath": ".spec.big"}
    ]
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "big"
    ] = {"type": "boolean"}
    status, updated = await client.put(f"{CRDS}/widgets.example.com", crd)
    assert status == 200, updated

    async def unserved() -> bool:
        status, _ = await client.get(beta_path)
        return status == 404

    assert await eventually(unserved)
    status, patched = await client.patch(f"{WIDGETS}/w1", {"spec": {"big": True}}, MERGE)
    assert status == 200 and patched["spec"]["big"] is True  # the new field is not pruned
    status, table = await client.get(WIDGETS, headers={"Accept": TABLE})
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Big"]
    assert table["rows"][0]["cells"] == ["w1", True]


async def test_deleting_crds_as_a_collection_deletes_their_objects(client) -> None:
    await create_crd(client)
    await client.post(WIDGETS, widget())
    status, _ = await client.delete(CRDS)
    assert status == 200

    async def unserved() -> bool:
        status, _ = await client.get(WIDGETS)
        return status == 404

    assert await eventually(unserved)
    await create_crd(client)
    status, listed = await client.get(WIDGETS)
    assert listed["items"] == []
