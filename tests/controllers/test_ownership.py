"""Owner event routing (`ownership.OwnedEvents`, `resolve`, `selecting`).

Aspects: a controller reference reaches its owner only when kind and uid agree;
adds tick off creations and updates/deletes tick off deletions; an orphan is
shown to the owners that may adopt it when it appears or its labels change;
a resync is ignored; a changed reference tells the old owner too; an object
being deleted counts as deleted only where the controller asks for it.
"""

from __future__ import annotations

from typing import Any

from nanokube.api.resources.apps import REPLICA_SET
from nanokube.client.cache import key_of
from nanokube.client.informer import Informer
from nanokube.client.interface import Client
from nanokube.controllers import ownership
from nanokube.controllers.expectations import Expectations

Obj = dict[str, Any]


def rs(name: str, uid: str, app: str) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid},
        "spec": {"selector": {"matchLabels": {"app": app}}},
    }


def pod(name: str, rv: str, owner: Obj | None = None, **labels: str) -> Obj:
    md: Obj = {"name": name, "namespace": "ns", "resourceVersion": rv, "labels": labels}
    if owner is not None:
        md["ownerReferences"] = [
            {
                "kind": "ReplicaSet",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
            }
        ]
    return {"metadata": md}


class Router:
    """OwnedEvents over a ReplicaSet cache filled by hand, recording what it enqueues."""

    def __init__(self, client: Client, **options: Any) -> None:
        self.owners = Informer(client, REPLICA_SET)
        self.a, self.b = rs("a", "uid-a", "web"), rs("b", "uid-b", "db")
        for owner in (self.a, self.b):
            self.owners.cache.put(key_of(owner), owner)
        self.queued: list[str] = []
        self.expectations = Expectations()
        self.events = ownership.OwnedEvents(
            self.owners,
            lambda obj: self.queued.append(key_of(obj)),
            expectations=self.expectations,
            adopters=lambda obj: ownership.selecting(self.owners, obj),
            **options,
        )


async def test_resolve_needs_kind_and_uid(client: Client) -> None:
    r = Router(client)
    assert ownership.resolve(r.owners, pod("p", "1", r.a)) is r.a
    stale = pod("p", "1", rs("a", "uid-old", "web"))
    assert ownership.resolve(r.owners, stale) is None
    other_kind = pod("p", "1", r.a)
    other_kind["metadata"]["ownerReferences"][0]["kind"] = "StatefulSet"
    assert ownership.resolve(r.owners, other_kind) is None
    assert ownership.resolve(r.owners, pod("p", "1")) is None


async def test_add_and_delete_tick_off_expectations(client: Client) -> None:
    r = Router(client)
    r.expectations.expect_creations("ns/a", 1)
    r.events.on_add(pod("p", "1", r.a))
    assert r.queued == ["ns/a"] and r.expectations.satisfied("ns/a")
    r.expectations.expect_deletions("ns/a", ["ns/p"])
    r.events.on_delete(pod("p", "2", r.a))
    assert r.queued == ["ns/a", "ns/a"] and r.expectations.satisfied("ns/a")


async def test_orphans_go_to_the_owners_that_select_them(client: Client) -> None:
    r = Router(client)
    r.events.on_add(pod("p", "1", app="db"))
    assert r.queued == ["ns/b"]
    r.events.on_update(pod("p", "1", app="db"), pod("p", "1", app="web"))
    assert r.queued == ["ns/b"]  # a resync: nothing changed
    r.events.on_update(pod("p", "1", app="db"), pod("p", "2", app="web"))
    assert r.queued == ["ns/b", "ns/a"]
    r.events.on_update(pod("p", "2", app="web"), pod("p", "3", app="web"))
    assert r.queued == ["ns/b", "ns/a"]  # labels and reference unchanged


async def test_a_changed_reference_tells_both_owners(client: Client) -> None:
    r = Router(client)
    r.events.on_update(pod("p", "1", r.a), pod("p", "2", r.b))
    assert r.queued == ["ns/a", "ns/b"]
    r.events.on_update(pod("p", "2", r.b), pod("p", "3", app="web"))
    assert r.queued == ["ns/a", "ns/b", "ns/b", "ns/a"]  # released, then a may adopt it


async def test_deleting_counts_as_deleted_only_when_asked(client: Client) -> None:
    owner = rs("a", "uid-a", "web")
    going = pod("p", "2", owner)
    going["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    eager = Router(client, deleting_is_deleted=True)
    eager.expectations.expect_deletions("ns/a", ["ns/p"])
    eager.events.on_update(pod("p", "1", owner), going)
    assert eager.queued == ["ns/a"] and eager.expectations.satisfied("ns/a")
    patient = Router(client)
    patient.expectations.expect_deletions("ns/a", ["ns/p"])
    patient.events.on_update(pod("p", "1", owner), going)
    assert patient.queued == ["ns/a"] and not patient.expectations.satisfied("ns/a")
