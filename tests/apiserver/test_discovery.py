"""Discovery, version and health endpoints, as kubectl 1.33 reads them."""

from __future__ import annotations

AGG = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


async def test_version(client) -> None:
    status, v = await client.get("/version")
    assert status == 200 and v["major"] == "1" and v["minor"] == "33"
    assert v["gitVersion"].startswith("v1.33.")


async def test_health(client) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        status, body = await client.get(path)
        assert status == 200 and body == "ok"


async def test_legacy_discovery(client) -> None:
    _, api = await client.get("/api")
    assert api["versions"] == ["v1"]
    _, core = await client.get("/api/v1")
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["pods"]["namespaced"] and "po" in by_name["pods"]["shortNames"]
    assert "pods/status" in by_name
    _, groups = await client.get("/apis")
    names = {g["name"] for g in groups["groups"]}
    assert {"apps", "batch", "autoscaling", "rbac.authorization.k8s.io"} <= names
    _, apps = await client.get("/apis/apps/v1")
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")


async def test_aggregated_discovery_content_type(client) -> None:
    status, body, resp = await client.request("GET", "/apis", headers={"Accept": AGG})
    assert status == 200
    assert resp.headers["Content-Type"] == (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    groups = {item["metadata"]["name"]: item for item in body["items"]}
    deploy = next(
        r for r in groups["apps"]["versions"][0]["resources"] if r["resource"] == "deployments"
    )
    assert deploy["scope"] == "Namespaced"
    assert {s["subresource"] for s in deploy["subresources"]} == {"status", "scale"}
    _, core, _ = await client.request("GET", "/api", headers={"Accept": AGG})
    assert [i["metadata"]["name"] for i in core["items"]] == [""]


async def test_unknown_paths_are_404_status(client) -> None:
    status, err = await client.get("/apis/nope.example.com/v1/things")
    assert status == 404 and err["kind"] == "Status"
