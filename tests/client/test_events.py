"""The event recorder: upstream's Event shape (involvedObject, source, timestamps, count),
repeats aggregated into one Event's count by a patch, a new Event when the old one is gone,
and recording that never blocks or raises."""

from __future__ import annotations

from client_support import CONFIG_MAP, EVENT

from nanokube.client.events import EventRecorder
from nanokube.client.interface import Client


async def events_about(client: Client, name: str) -> list[dict]:
    listed = await client.list(EVENT, "default")
    return [e for e in listed["items"] if e["involvedObject"]["name"] == name]


async def test_event_has_upstreams_shape(any_client: Client) -> None:
    obj = await any_client.create(CONFIG_MAP, {"metadata": {"name": "subject"}}, "default")
    recorder = EventRecorder(any_client, "test-controller", "node-1", event_kind=EVENT)
    recorder.record(obj, "Normal", "Created", "made it")
    await recorder.close()
    (event,) = await events_about(any_client, "subject")
    assert event["metadata"]["name"].startswith("subject.")
    assert event["involvedObject"] == {
        "kind": "ConfigMap",
        "namespace": "default",
        "name": "subject",
        "uid": obj["metadata"]["uid"],
        "apiVersion": "v1",
        "resourceVersion": obj["metadata"]["resourceVersion"],
    }
    assert event["source"] == {"component": "test-controller", "host": "node-1"}
    assert (event["type"], event["reason"], event["message"], event["count"]) == (
        "Normal",
        "Created",
        "made it",
        1,
    )
    assert event["firstTimestamp"] == event["lastTimestamp"]


async def test_repeats_increment_count_on_one_event(any_client: Client) -> None:
    obj = await any_client.create(CONFIG_MAP, {"metadata": {"name": "noisy"}}, "default")
    recorder = EventRecorder(any_client, "c", event_kind=EVENT)
    for _ in range(3):
        recorder.warning(obj, "Failed", "it broke")
    recorder.warning(obj, "Failed", "it broke differently")
    await recorder.close()
    events = sorted(await events_about(any_client, "noisy"), key=lambda e: e["message"])
    assert [(e["message"], e["count"]) for e in events] == [
        ("it broke", 3),
        ("it broke differently", 1),
    ]


async def test_a_deleted_event_is_created_again(any_client: Client) -> None:
    obj = await any_client.create(CONFIG_MAP, {"metadata": {"name": "again"}}, "default")
    recorder = EventRecorder(any_client, "c", event_kind=EVENT)
    recorder.normal(obj, "Synced", "ok")
    await recorder.flush()
    (first,) = await events_about(any_client, "again")
    await any_client.delete(EVENT, first["metadata"]["name"], "default")
    recorder.normal(obj, "Synced", "ok")
    await recorder.close()
    (second,) = await events_about(any_client, "again")
    assert second["count"] == 1 and second["metadata"]["name"] != first["metadata"]["name"]


async def test_cluster_scoped_objects_get_events_in_default(any_client: Client) -> None:
    node_like = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u"}}
    recorder = EventRecorder(any_client, "c", event_kind=EVENT)
    recorder.normal(node_like, "Ready", "node is ready")
    await recorder.close()
    (event,) = await events_about(any_client, "n1")
    assert event["metadata"]["namespace"] == "default"
    assert "namespace" not in event["involvedObject"]


async def test_failed_writes_are_dropped_not_raised(any_client: Client) -> None:
    recorder = EventRecorder(any_client, "c", event_kind=EVENT)
    # No name: the server rejects the Event (invalid); the recorder only logs it.
    recorder.normal({"kind": "ConfigMap", "metadata": {"namespace": "nowhere-ns"}}, "R", "m")
    recorder.normal({"kind": "ConfigMap", "metadata": {"name": "fine"}}, "R", "m")
    await recorder.close()
    assert len(await events_about(any_client, "fine")) == 1
