"""The generic resource handler over HTTP: create, get, list, update, patch, delete.

Aspects: upstream Status errors (404/409/422/400), generateName, dryRun, field
validation, resourceVersion conflicts, generation, status split, finalizers,
pagination, label and field selectors, tables, and the scale subresource.
"""

from __future__ import annotations

from typing import Any

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def deployment(name: str = "web", replicas: int = 2, image: str = "busybox:1") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


async def test_create_get_and_conflicting_create(client) -> None:
    status, created = await client.post(CM, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    assert status == 201
    md = created["metadata"]
    assert md["uid"] and md["creationTimestamp"] and md["resourceVersion"]
    assert created["kind"] == "ConfigMap" and created["apiVersion"] == "v1"
    status, got = await client.get(f"{CM}/a")
    assert status == 200 and got == created
    status, err = await client.post(CM, {"metadata": {"name": "a"}})
    assert status == 409 and err["reason"] == "AlreadyExists"
    assert err["message"] == 'configmaps "a" already exists'


async def test_not_found_is_a_status(client) -> None:
    status, err = await client.get(f"{CM}/missing")
    assert status == 404
    assert err == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "missing" not found',
        "reason": "NotFound",
        "details": {"name": "missing", "kind": "configmaps"},
        "code": 404,
    }


async def test_generate_name(client) -> None:
    status, created = await client.post(CM, {"metadata": {"generateName": "gen-"}})
    assert status == 201
    assert created["metadata"]["name"].startswith("gen-")
    assert len(created["metadata"]["name"]) == len("gen-") + 5


async def test_dry_run_stores_nothing(client) -> None:
    status, _ = await client.post(CM + "?dryRun=All", {"metadata": {"name": "dry"}})
    assert status == 201
    status, _ = await client.get(f"{CM}/dry")
    assert status == 404


async def test_malformed_bodies_are_400_and_store_nothing(client) -> None:
    status, err, _ = await client.request("POST", CM, raw=b'{"metadata": {"name": "x"')
    assert status == 400 and err["reason"] == "BadRequest"
    status, err, _ = await client.request(
        "POST", CM, raw=b"metadata: [unclosed", content_type="application/yaml"
    )
    assert status == 400
    status, _ = await client.get(f"{CM}/x")
    assert status == 404


async def test_yaml_body(client) -> None:
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n"
    status, created, _ = await client.request("POST", CM, raw=body, content_type="application/yaml")
    assert status == 201 and created["data"] == {"a": "b"}


async def test_field_validation_strict_warn_ignore(client) -> None:
    body = {"metadata": {"name": "f1"}, "bogus": 1}
    status, err = await client.post(CM + "?fieldValidation=Strict", body)
    assert status == 400
    assert 'unknown field "bogus"' in err["message"]
    status, _, resp = await client.request("POST", CM + "?fieldValidation=Warn", body)
    assert status == 201
    assert resp.headers.getall("Warning") == ['299 - "unknown field \\"bogus\\""'] or any(
        "unknown field" in w for w in resp.headers.getall("Warning")
    )
    status, _ = await client.post(
        CM + "?fieldValidation=Ignore", {"metadata": {"name": "f3"}, "bogus": 1}
    )
    assert status == 201


async def test_update_with_stale_resource_version_is_409(client) -> None:
    _, created = await client.post(CM, {"metadata": {"name": "u"}, "data": {"a": "1"}})
    created["data"] = {"a": "2"}
    status, updated = await client.put(f"{CM}/u", created)
    assert status == 200 and updated["data"] == {"a": "2"}
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    created["data"] = {"a": "3"}
    status, err = await client.put(f"{CM}/u", created)  # still the old resourceVersion
    assert status == 409 and err["reason"] == "Conflict"


async def test_unchanged_update_writes_nothing(client) -> None:
    _, created = await client.post(CM, {"metadata": {"name": "same"}, "data": {"a": "1"}})
    status, again = await client.put(f"{CM}/same", created)
    assert status == 200
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_generation_and_status_split(client) -> None:
    status, created = await client.post(DEPLOY, deployment())
    assert status == 201, created
    assert created["metadata"]["generation"] == 1
    assert created["spec"]["strategy"]["type"] == "RollingUpdate"  # defaulted
    created["status"] = {"replicas": 7}
    created["spec"]["replicas"] = 3
    status, updated = await client.put(f"{DEPLOY}/web", created)
    assert status == 200
    assert updated["metadata"]["generation"] == 2
    assert "replicas" not in (updated.get("status") or {})  # main endpoint ignores status
    updated["status"] = {"replicas": 3}
    updated["spec"]["replicas"] = 9
    status, st = await client.put(f"{DEPLOY}/web/status", updated)
    assert status == 200
    assert st["status"]["replicas"] == 3 and st["spec"]["replicas"] == 3  # status keeps spec
    assert st["metadata"]["generation"] == 2


async def test_invalid_deployment_selector_is_422(client) -> None:
    bad = deployment()
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    status, err = await client.post(DEPLOY, bad)
    assert status == 422 and err["reason"] == "Invalid"
    assert "`selector` does not match template `labels`" in err["message"]
    assert err["details"]["causes"]
    status, _ = await client.get(f"{DEPLOY}/web")
    assert status == 404


async def test_patch_types(client) -> None:
    await client.post(DEPLOY, deployment())
    status, merged = await client.patch(
        f"{DEPLOY}/web", {"metadata": {"labels": {"tier": "front"}}}, "application/merge-patch+json"
    )
    assert status == 200 and merged["metadata"]["labels"] == {"tier": "front"}
    status, smp = await client.patch(
        f"{DEPLOY}/web",
        {"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox:2"}]}}}},
        "application/strategic-merge-patch+json",
    )
    assert status == 200
    names = [c["name"] for c in smp["spec"]["template"]["spec"]["containers"]]
    assert names == ["side", "app"] or sorted(names) == ["app", "side"]
    status, jp = await client.patch(
        f"{DEPLOY}/web",
        [{"op": "replace", "path": "/spec/replicas", "value": 4}],
        "application/json-patch+json",
    )
    assert status == 200 and jp["spec"]["replicas"] == 4
    status, err = await client.patch(f"{DEPLOY}/web", {"spec": {}}, "application/xml")
    assert status == 415


async def test_scale_subresource(client) -> None:
    await client.post(DEPLOY, deployment(replicas=2))
    status, scale = await client.get(f"{DEPLOY}/web/scale")
    assert status == 200
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    assert scale["status"]["selector"] == "app=web"
    status, scaled = await client.patch(
        f"{DEPLOY}/web/scale", {"spec": {"replicas": 5}}, "application/merge-patch+json"
    )
    assert status == 200 and scaled["spec"]["replicas"] == 5
    _, dep = await client.get(f"{DEPLOY}/web")
    assert dep["spec"]["replicas"] == 5


async def test_finalizer_holds_deletion(client) -> None:
    await client.post(CM, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    status, marked = await client.delete(f"{CM}/held")
    assert status == 200 and marked["metadata"]["deletionTimestamp"]
    status, still = await client.get(f"{CM}/held")
    assert status == 200
    still["metadata"]["finalizers"] = []
    status, _ = await client.put(f"{CM}/held", still)
    assert status == 200
    status, _ = await client.get(f"{CM}/held")
    assert status == 404


async def test_pagination_and_selectors(client) -> None:
    for i in range(7):
        await client.post(CM, {"metadata": {"name": f"p{i}", "labels": {"n": str(i % 2)}}})
    names = []
    path = f"{CM}?limit=3"
    while True:
        status, page = await client.get(path)
        assert status == 200
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
        path = f"{CM}?limit=3&continue={token}"
    assert names == [f"p{i}" for i in range(7)]
    _, odd = await client.get(f"{CM}?labelSelector=n%3D1")
    assert [i["metadata"]["name"] for i in odd["items"]] == ["p1", "p3", "p5"]
    _, one = await client.get(f"{CM}?fieldSelector=metadata.name%3Dp4")
    assert [i["metadata"]["name"] for i in one["items"]] == ["p4"]
    status, err = await client.get(f"{CM}?fieldSelector=spec.bogus%3D1")
    assert status == 400


async def test_table_output(client) -> None:
    await client.post(DEPLOY, deployment())
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    status, table = await client.get(DEPLOY, headers={"Accept": accept})
    assert status == 200 and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:5] == [
        "Name",
        "Ready",
        "Up-to-date",
        "Available",
        "Age",
    ]
    row = table["rows"][0]
    assert row["cells"][0] == "web"
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == "web"


async def test_namespace_must_exist(client) -> None:
    status, err = await client.post(
        "/api/v1/namespaces/nope/configmaps", {"metadata": {"name": "x"}}
    )
    assert status == 404 and err["message"] == 'namespaces "nope" not found'


async def test_namespace_mismatch_is_400(client) -> None:
    status, err = await client.post(CM, {"metadata": {"name": "x", "namespace": "other"}})
    assert status == 400


async def test_generate_name_draws_again_when_taken(client, monkeypatch) -> None:
    from nanokube.apiserver import rest

    names = iter(["gen-aaaaa", "gen-aaaaa", "gen-bbbbb"])
    monkeypatch.setattr(rest, "_generated", lambda prefix: next(names))
    _, first = await client.post(CM, {"metadata": {"generateName": "gen-"}})
    status, second = await client.post(CM, {"metadata": {"generateName": "gen-"}})
    assert first["metadata"]["name"] == "gen-aaaaa"
    assert status == 201 and second["metadata"]["name"] == "gen-bbbbb"
