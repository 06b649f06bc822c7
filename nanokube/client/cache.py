"""The informers' local store: objects by `namespace/name`, plus optional indexes.

Controllers read here, never from the API, for every list they need ("the pods
of this ReplicaSet", "the pods on this node"), so reads return the stored dicts
themselves, without copying: they are shared and must never be mutated (copy
with `nanokube.api.patch_json.copy_json` before editing, as client-go asks of
its listers). An index maps a value computed from each object (a node name,
an owner uid) to the keys of the objects with that value, and is kept up to
date on every change, so a lookup costs a dict access.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from typing import Any

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]

NAMESPACE_INDEX = "namespace"


def key_of(obj: Obj) -> str:
    """`namespace/name`, or `name` for a cluster-scoped object (client-go's MetaNamespaceKeyFunc)."""
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    return f"{ns}/{md.get('name', '')}" if ns else md.get("name", "")


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name) of a key; the namespace is empty for cluster-scoped objects."""
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else ("", ns)


def by_namespace(obj: Obj) -> list[str]:
    return [(obj.get("metadata") or {}).get("namespace") or ""]


def by_node_name(obj: Obj) -> list[str]:
    """Pods by `spec.nodeName` (unscheduled pods under "")."""
    return [(obj.get("spec") or {}).get("nodeName") or ""]


def by_owner_uid(obj: Obj) -> list[str]:
    """Objects by the uid of each of their owners."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return [r["uid"] for r in refs if r.get("uid")]


class Indexer:
    """A key → object map with secondary indexes; not thread-safe (one event loop)."""

    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {NAMESPACE_INDEX: by_namespace}
        self._indices: dict[str, dict[str, set[str]]] = {NAMESPACE_INDEX: {}}
        # Each object's index values as last indexed, to remove them on change.
        self._values: dict[str, dict[str, tuple[str, ...]]] = {}
        self.add_indexers(indexers or {})

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        """Add indexes (a no-op for names already present), indexing the stored objects."""
        for name, func in indexers.items():
            if name in self._indexers:
                continue
            self._indexers[name] = func
            index: dict[str, set[str]] = {}
            self._indices[name] = index
            for key, obj in self._items.items():
                values = tuple(func(obj))
                self._values[key][name] = values
                for v in values:
                    index.setdefault(v, set()).add(key)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def get_by_name(self, name: str, namespace: str = "") -> Obj | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def keys(self) -> list[str]:
        return list(self._items)

    def list(self, namespace: str = "") -> builtins.list[Obj]:
        """Every object, or those of one namespace (through the namespace index)."""
        if not namespace:
            return list(self._items.values())
        return self.by_index(NAMESPACE_INDEX, namespace)

    def by_index(self, index: str, value: str) -> builtins.list[Obj]:
        """The objects whose `index` function returned `value`; KeyError for an unknown index."""
        keys = self._indices[index].get(value)
        if not keys:
            return []
        items = self._items
        return [items[k] for k in keys]

    def index_keys(self, index: str, value: str) -> builtins.list[str]:
        return list(self._indices[index].get(value) or ())

    def put(self, key: str, obj: Obj) -> Obj | None:
        """Store `obj`; returns the object it replaced."""
        old = self._items.get(key)
        self._items[key] = obj
        old_values = self._values.get(key) or {}
        new_values: dict[str, tuple[str, ...]] = {}
        for name, func in self._indexers.items():
            values = tuple(func(obj))
            new_values[name] = values
            before = old_values.get(name, ())
            if values == before:
                continue
            index = self._indices[name]
            for v in before:
                self._discard(index, v, key)
            for v in values:
                index.setdefault(v, set()).add(key)
        self._values[key] = new_values
        return old

    def remove(self, key: str) -> Obj | None:
        """Drop `key`; returns the object it held."""
        old = self._items.pop(key, None)
        for name, values in (self._values.pop(key, None) or {}).items():
            index = self._indices[name]
            for v in values:
                self._discard(index, v, key)
        return old

    @staticmethod
    def _discard(index: dict[str, set[str]], value: str, key: str) -> None:
        keys = index.get(value)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del index[value]
