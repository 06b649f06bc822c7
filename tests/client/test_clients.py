"""The behaviour both clients share (each test runs in-process and over HTTP): CRUD,
the errors of conflicts and missing objects, lists with selectors and pages, watches
(including the 410 of a too-old revision), and that returned objects are the caller's."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from client_support import CONFIG_MAP, NAMESPACE, POD

from nanokube.api import errors
from nanokube.client.interface import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, Client


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict:
    md: dict = {"name": name}
    if labels:
        md["labels"] = labels
    return {"metadata": md, "data": data}


async def test_create_get_update_delete(any_client: Client) -> None:
    created = await any_client.create(CONFIG_MAP, cm("a", x="1"), "default")
    assert created["kind"] == "ConfigMap" and created["metadata"]["uid"]
    got = await any_client.get(CONFIG_MAP, "a", "default")
    assert got["data"] == {"x": "1"}
    got["data"]["x"] = "2"
    updated = await any_client.update(CONFIG_MAP, got)
    assert updated["data"] == {"x": "2"}
    assert int(updated["metadata"]["resourceVersion"]) > int(got["metadata"]["resourceVersion"])
    await any_client.delete(CONFIG_MAP, "a", "default")
    with pytest.raises(errors.NotFound) as err:
        await any_client.get(CONFIG_MAP, "a", "default")
    assert err.value.message == 'configmaps "a" not found'


async def test_namespace_comes_from_the_object_when_not_given(any_client: Client) -> None:
    body = cm("from-body")
    body["metadata"]["namespace"] = "kube-system"
    created = await any_client.create(CONFIG_MAP, body)
    assert created["metadata"]["namespace"] == "kube-system"


async def test_cluster_scoped_kinds(any_client: Client) -> None:
    await any_client.create(NAMESPACE, {"metadata": {"name": "team-a"}})
    got = await any_client.get(NAMESPACE, "team-a")
    assert "namespace" not in got["metadata"]


async def test_create_twice_is_already_exists(any_client: Client) -> None:
    await any_client.create(CONFIG_MAP, cm("dup"), "default")
    with pytest.raises(errors.AlreadyExists) as err:
        await any_client.create(CONFIG_MAP, cm("dup"), "default")
    assert err.value.code == 409 and err.value.name == "dup"


async def test_stale_update_is_conflict(any_client: Client) -> None:
    first = await any_client.create(CONFIG_MAP, cm("c", v="1"), "default")
    newer = dict(first, data={"v": "2"})
    await any_client.update(CONFIG_MAP, newer)
    stale = dict(first, data={"v": "3"})
    with pytest.raises(errors.Conflict) as err:
        await any_client.update(CONFIG_MAP, stale)
    assert "the object has been modified" in err.value.message


async def test_invalid_object_carries_its_causes(any_client: Client) -> None:
    with pytest.raises(errors.Invalid) as err:
        await any_client.create(CONFIG_MAP, {"metadata": {}}, "default")
    assert [c.field for c in err.value.causes] == ["metadata.name"]
    assert err.value.causes[0].message.startswith("Required value")


async def test_delete_precondition_is_conflict(any_client: Client) -> None:
    await any_client.create(CONFIG_MAP, cm("pre"), "default")
    with pytest.raises(errors.Conflict):
        await any_client.delete(CONFIG_MAP, "pre", "default", preconditions={"uid": "nope"})


async def test_dry_run_stores_nothing(any_client: Client) -> None:
    out = await any_client.create(CONFIG_MAP, cm("dry"), "default", dry_run=True)
    assert out["metadata"]["name"] == "dry"
    with pytest.raises(errors.NotFound):
        await any_client.get(CONFIG_MAP, "dry", "default")


@pytest.mark.parametrize(
    "patch_type,patch",
    [
        (MERGE_PATCH, {"data": {"b": "2"}}),
        (STRATEGIC_PATCH, {"data": {"b": "2"}}),
        (JSON_PATCH, [{"op": "add", "path": "/data/b", "value": "2"}]),
    ],
)
async def test_patch_types(any_client: Client, patch_type: str, patch: object) -> None:
    await any_client.create(CONFIG_MAP, cm("p", a="1"), "default")
    out = await any_client.patch(CONFIG_MAP, "p", patch, "default", patch_type=patch_type)
    assert out["data"] == {"a": "1", "b": "2"}


async def test_status_subresource_update(any_client: Client) -> None:
    pod = {
        "metadata": {"name": "p1"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    created = await any_client.create(POD, pod, "default")
    created["status"] = {"phase": "Running"}
    updated = await any_client.update(POD, created, subresource="status")
    assert updated["status"]["phase"] == "Running"
    patched = await any_client.patch(
        POD, "p1", {"status": {"phase": "Succeeded"}}, "default", subresource="status"
    )
    assert patched["status"]["phase"] == "Succeeded"


async def test_list_with_label_and_field_selectors(any_client: Client) -> None:
    await any_client.create(CONFIG_MAP, cm("l1", {"app": "web", "tier": "fe"}), "default")
    await any_client.create(CONFIG_MAP, cm("l2", {"app": "web"}), "default")
    await any_client.create(CONFIG_MAP, cm("l3", {"app": "db"}), "default")

    async def names(**kw: str) -> list[str]:
        listed = await any_client.list(CONFIG_MAP, "default", **kw)
        return [o["metadata"]["name"] for o in listed["items"]]

    assert await names(label_selector="app=web") == ["l1", "l2"]
    assert await names(label_selector="app in (web,db),!tier") == ["l2", "l3"]
    assert await names(field_selector="metadata.name=l3") == ["l3"]
    assert await names(label_selector="app=web", field_selector="metadata.name!=l1") == ["l2"]
    with pytest.raises(errors.BadRequest):
        await names(field_selector="spec.nothing=x")


async def test_list_pages_with_limit_and_continue(any_client: Client) -> None:
    for i in range(5):
        await any_client.create(CONFIG_MAP, cm(f"page{i}", {"paged": "yes"}), "default")
    seen: list[str] = []
    token = ""
    while True:
        page = await any_client.list(
            CONFIG_MAP, "default", label_selector="paged=yes", limit=2, continue_token=token
        )
        seen += [o["metadata"]["name"] for o in page["items"]]
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert seen == [f"page{i}" for i in range(5)]


async def test_list_across_namespaces(any_client: Client) -> None:
    await any_client.create(CONFIG_MAP, cm("n1"), "default")
    await any_client.create(CONFIG_MAP, cm("n2"), "kube-system")
    listed = await any_client.list(CONFIG_MAP)
    assert {o["metadata"]["namespace"] for o in listed["items"]} >= {"default", "kube-system"}


async def test_returned_objects_are_the_callers(any_client: Client) -> None:
    body = cm("own", x="1")
    created = await any_client.create(CONFIG_MAP, body, "default")
    assert "uid" not in body["metadata"]  # the input was not touched
    created["data"]["x"] = "mutated"
    got = await any_client.get(CONFIG_MAP, "own", "default")
    got["data"]["x"] = "mutated too"
    listed = await any_client.list(CONFIG_MAP, "default")
    for item in listed["items"]:
        item["data"] = {"x": "mutated in a list"}
    assert (await any_client.get(CONFIG_MAP, "own", "default"))["data"] == {"x": "1"}


async def collect(client: Client, count: int, **kw: object) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    events = client.watch(CONFIG_MAP, "default", **kw)  # type: ignore[arg-type]
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        async for etype, obj in events:
            out.append((etype, obj))
            if len(out) == count:
                break
    return out


async def test_watch_from_a_list_revision(any_client: Client) -> None:
    rv = (await any_client.list(CONFIG_MAP, "default"))["metadata"]["resourceVersion"]
    task = asyncio.create_task(collect(any_client, 3, resource_version=rv))
    await asyncio.sleep(0.05)
    created = await any_client.create(CONFIG_MAP, cm("w", a="1"), "default")
    created["data"] = {"a": "2"}
    await any_client.update(CONFIG_MAP, created)
    await any_client.delete(CONFIG_MAP, "w", "default")
    events = await asyncio.wait_for(task, 5)
    assert [t for t, _ in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1][1]["data"] == {"a": "2"}


async def test_watch_with_selector_turns_moves_into_add_and_delete(any_client: Client) -> None:
    rv = (await any_client.list(CONFIG_MAP, "default"))["metadata"]["resourceVersion"]
    task = asyncio.create_task(collect(any_client, 2, resource_version=rv, label_selector="app=x"))
    await asyncio.sleep(0.05)
    obj = await any_client.create(CONFIG_MAP, cm("m", {"app": "y"}), "default")
    obj["metadata"]["labels"] = {"app": "x"}
    obj = await any_client.update(CONFIG_MAP, obj)
    obj["metadata"]["labels"] = {"app": "z"}
    await any_client.update(CONFIG_MAP, obj)
    events = await asyncio.wait_for(task, 5)
    assert [t for t, _ in events] == ["ADDED", "DELETED"]


async def test_watch_ends_at_its_timeout(any_client: Client) -> None:
    rv = (await any_client.list(CONFIG_MAP, "default"))["metadata"]["resourceVersion"]
    events = await asyncio.wait_for(
        collect(any_client, 10, resource_version=rv, timeout_seconds=1), 5
    )
    assert events == []


async def test_watch_too_old_revision_raises_expired(any_client: Client, server) -> None:
    server.cache.prefix("/registry/configmaps/").window_start = 10**9
    with pytest.raises(errors.Expired):
        await collect(any_client, 1, resource_version="1")


async def test_watch_cut_off_raises_expired(any_client: Client, server) -> None:
    rv = (await any_client.list(CONFIG_MAP, "default"))["metadata"]["resourceVersion"]
    task = asyncio.create_task(collect(any_client, 5, resource_version=rv))
    await asyncio.sleep(0.1)
    # What the watch cache does to a watcher that falls too far behind.
    for watcher in server.cache.prefix("/registry/configmaps/").watchers:
        watcher.cut_off = True
        watcher.queue.put_nowait(None)
    with pytest.raises(errors.Expired):
        await asyncio.wait_for(task, 5)


async def test_watch_unregisters_when_closed(any_client: Client, server) -> None:
    before = server.cache.watcher_count()
    await any_client.create(CONFIG_MAP, cm("u"), "default")
    events = await asyncio.wait_for(collect(any_client, 1, resource_version="0"), 5)
    assert events[0][0] == "ADDED"
    # aiohttp's server notices a closed watch connection on its next write.
    await any_client.create(CONFIG_MAP, cm("u2"), "default")
    for _ in range(50):
        if server.cache.watcher_count() == before:
            break
        await asyncio.sleep(0.02)
    assert server.cache.watcher_count() == before
