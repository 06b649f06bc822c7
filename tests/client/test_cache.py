"""The informers' indexer: keys, namespace listing, extra indexes kept current on change
and removal, and indexes added after objects are stored."""

from __future__ import annotations

from nanokube.client.cache import Indexer, by_node_name, by_owner_uid, key_of, split_key


def pod(name: str, ns: str = "default", node: str = "", owners: tuple[str, ...] = ()) -> dict:
    md: dict = {"name": name, "namespace": ns}
    if owners:
        md["ownerReferences"] = [{"uid": u} for u in owners]
    return {"metadata": md, "spec": {"nodeName": node} if node else {}}


def test_keys() -> None:
    assert key_of(pod("a", "ns")) == "ns/a"
    assert key_of({"metadata": {"name": "node-1"}}) == "node-1"
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("node-1") == ("", "node-1")


def test_indexes_follow_changes_and_removals() -> None:
    cache = Indexer({"node": by_node_name, "owner": by_owner_uid})
    cache.put("default/a", pod("a", node="n1", owners=("u1",)))
    cache.put("default/b", pod("b", node="n1", owners=("u1", "u2")))
    cache.put("other/c", pod("c", "other"))
    assert {o["metadata"]["name"] for o in cache.by_index("node", "n1")} == {"a", "b"}
    assert [o["metadata"]["name"] for o in cache.by_index("node", "")] == ["c"]
    assert {o["metadata"]["name"] for o in cache.by_index("owner", "u1")} == {"a", "b"}
    cache.put("default/a", pod("a", node="n2"))
    assert [o["metadata"]["name"] for o in cache.by_index("node", "n1")] == ["b"]
    assert cache.by_index("owner", "u1")[0]["metadata"]["name"] == "b"
    cache.remove("default/b")
    assert cache.by_index("node", "n1") == [] and cache.by_index("owner", "u2") == []
    assert [o["metadata"]["name"] for o in cache.list("other")] == ["c"]
    assert len(cache.list()) == 2


def test_an_index_added_later_covers_stored_objects() -> None:
    cache = Indexer()
    cache.put("default/a", pod("a", node="n1"))
    cache.add_indexers({"node": by_node_name})
    assert cache.index_keys("node", "n1") == ["default/a"]
    cache.put("default/a", pod("a", node="n2"))
    assert cache.index_keys("node", "n1") == [] and cache.index_keys("node", "n2") == ["default/a"]


def test_reads_return_the_stored_objects_without_copying() -> None:
    cache = Indexer()
    obj = pod("a")
    cache.put("default/a", obj)
    assert cache.get("default/a") is obj
    assert cache.get_by_name("a", "default") is obj
