"""Watches over HTTP: from a list's resourceVersion, synthetic ADDED from 0, selectors,
410 for revisions older than the cache's window, bookmarks and the initial-events end."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

CM = "/api/v1/namespaces/default/configmaps"


async def read_events(client, path: str, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with client.session.get(client.base + path) as resp:
        assert resp.status == 200

        async def consume() -> None:
            async for line in resp.content:
                if line.strip():
                    events.append(orjson.loads(line))
                    if len(events) == count:
                        return

        await asyncio.wait_for(consume(), timeout)
    return events


async def test_watch_from_list_revision_sees_later_changes(client) -> None:
    _, listed = await client.get(CM)
    rv = listed["metadata"]["resourceVersion"]
    task = asyncio.create_task(read_events(client, f"{CM}?watch=true&resourceVersion={rv}", 3))
    await asyncio.sleep(0.1)
    _, created = await client.post(CM, {"metadata": {"name": "w"}, "data": {"a": "1"}})
    created["data"] = {"a": "2"}
    await client.put(f"{CM}/w", created)
    await client.delete(f"{CM}/w")
    events = await task
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1]["object"]["data"] == {"a": "2"}
    revs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert revs == sorted(revs)


async def test_watch_from_zero_starts_with_synthetic_added(client) -> None:
    await client.post(CM, {"metadata": {"name": "pre"}})
    events = await read_events(
        client, f"{CM}?watch=true&resourceVersion=0&fieldSelector=metadata.name%3Dpre", 1
    )
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "pre"


async def test_watch_replays_history_from_an_old_revision(client) -> None:
    _, first = await client.post(CM, {"metadata": {"name": "h1"}})
    await client.post(CM, {"metadata": {"name": "h2"}})
    await client.post(CM, {"metadata": {"name": "h3"}})
    rv = first["metadata"]["resourceVersion"]
    events = await read_events(client, f"{CM}?watch=true&resourceVersion={rv}", 2)
    assert [e["object"]["metadata"]["name"] for e in events] == ["h2", "h3"]


async def test_label_selector_turns_moves_into_added_and_deleted(client) -> None:
    _, listed = await client.get(CM)
    rv = listed["metadata"]["resourceVersion"]
    task = asyncio.create_task(
        read_events(client, f"{CM}?watch=true&resourceVersion={rv}&labelSelector=app%3Dx", 2)
    )
    await asyncio.sleep(0.1)
    _, obj = await client.post(CM, {"metadata": {"name": "m", "labels": {"app": "y"}}})
    obj["metadata"]["labels"] = {"app": "x"}
    _, obj = await client.put(f"{CM}/m", obj)
    obj["metadata"]["labels"] = {"app": "z"}
    await client.put(f"{CM}/m", obj)
    events = await task
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]


async def test_too_old_revision_is_410(client, server) -> None:
    server.cache.prefix("/registry/configmaps/").window_start = 10**9
    status, err = await client.get(f"{CM}?watch=true&resourceVersion=1")
    assert status == 410 and err["reason"] == "Expired"


async def test_send_initial_events_ends_with_annotated_bookmark(client) -> None:
    await client.post(CM, {"metadata": {"name": "i1"}})
    path = (
        f"{CM}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        "&allowWatchBookmarks=true&fieldSelector=metadata.name%3Di1"
    )
    events = await read_events(client, path, 2)
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_watch_ends_at_timeout(client) -> None:
    events = await read_events(
        client,
        f"{CM}?watch=true&timeoutSeconds=1&resourceVersion=0&fieldSelector=metadata.name%3Dnone",
        1_000,
        timeout=5,
    )
    assert events == []
