"""Finding the `Kind` declaration of a resource, by apiVersion+kind or by group+plural.

Controllers name resources by their `Kind` (`nanokube.api.resources`); code that
starts from an object (the event recorder, the garbage collector reading
`ownerReferences`) or from a resource name (a CLI argument) needs the lookup.
The built-in index is built once from `builtin_kinds()`; custom resources are
added to an index of their own as their CRDs appear.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from nanokube.api import errors
from nanokube.api.kinds import Kind
from nanokube.api.resources import builtin_kinds


class KindIndex:
    """Kinds by (apiVersion, kind) and by (group, plural); one version per kind, as served."""

    def __init__(self, kinds: Iterable[Kind] = ()) -> None:
        self._by_kind: dict[tuple[str, str], Kind] = {}
        self._by_resource: dict[tuple[str, str], Kind] = {}
        for k in kinds:
            self.add(k)

    def add(self, kind: Kind) -> None:
        self._by_kind[(kind.api_version, kind.kind)] = kind
        self._by_resource[(kind.group, kind.plural)] = kind

    def remove(self, kind: Kind) -> None:
        self._by_kind.pop((kind.api_version, kind.kind), None)
        self._by_resource.pop((kind.group, kind.plural), None)

    def by_kind(self, api_version: str, kind: str) -> Kind | None:
        return self._by_kind.get((api_version, kind))

    def by_resource(self, group: str, plural: str) -> Kind | None:
        return self._by_resource.get((group, plural))

    def for_object(self, obj: dict[str, Any]) -> Kind:
        """The Kind of an object by its `apiVersion` and `kind`; NotFound if unknown."""
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        found = self.by_kind(api_version, kind)
        if found is None:
            raise errors.NotFound(f'no matches for kind "{kind}" in version "{api_version}"')
        return found

    def __iter__(self) -> Any:
        return iter(list(self._by_kind.values()))


@cache
def builtin() -> KindIndex:
    """The index of every built-in kind, built on first use."""
    return KindIndex(builtin_kinds())


def by_kind(api_version: str, kind: str) -> Kind | None:
    """A built-in kind by `apiVersion` and `kind` (`"apps/v1", "Deployment"`)."""
    return builtin().by_kind(api_version, kind)


def by_resource(group: str, plural: str) -> Kind | None:
    """A built-in kind by group and plural (`"apps", "deployments"`; `""` is core)."""
    return builtin().by_resource(group, plural)
