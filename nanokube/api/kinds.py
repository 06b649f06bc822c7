"""The resource registry: what the API server needs to know about each kind.

Like upstream's per-kind "strategies", everything about a resource's behaviour is
declared once, in one `Kind`: its names and scope, its defaults, its semantic
validation, which fields an update may change, and how it prints as a table. The
API server has one generic handler for all of them; adding a kind is adding a
declaration (see `nanokube/api/resources/`), and custom resources become `Kind`s
at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nanokube.api.errors import Cause
from nanokube.api.meta import age

Obj = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Column:
    """One column of `kubectl get`: a `meta.k8s.io/v1` TableColumnDefinition."""

    name: str
    type: str = "string"  # string | integer | number | boolean | date
    format: str = ""  # "name" marks the NAME column
    description: str = ""
    priority: int = 0  # non-zero columns appear only with `-o wide`

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


@dataclass(frozen=True)
class Scale:
    """Where the `scale` subresource finds replicas and the selector in an object."""

    spec_replicas: tuple[str, ...] = ("spec", "replicas")
    status_replicas: tuple[str, ...] = ("status", "replicas")
    selector: tuple[str, ...] = ("spec", "selector")  # a LabelSelector object


def _no_defaults(obj: Obj) -> None:
    return None


def _no_update(new: Obj, old: Obj) -> None:
    return None


def _no_causes(obj: Obj) -> list[Cause]:
    return []


def _no_update_causes(new: Obj, old: Obj) -> list[Cause]:
    return []


def _age_row(obj: Obj) -> list[Any]:
    return [age(obj.get("metadata", {}).get("creationTimestamp"))]


@dataclass(frozen=True)
class Kind:
    """Everything about one resource type, in one place.

    `defaults` fills unset fields in place (run on every create and update, as
    upstream defaulting runs on every decode). `prepare_create` runs once on a
    create after status is reset (e.g. a pod starts in phase Pending).
    `validate` returns the semantic causes beyond the JSON schema, and
    `validate_update` those of an update (immutable fields). `row` returns the
    table cells for `columns`: every column after NAME, which the server adds
    first unless `columns` places a column of format "name" itself (events
    print NAME last); an "Age" cell is `meta.age(creationTimestamp)`.
    """

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # Generic subresources ("status", "scale") and special ones ("log", "exec",
    # "binding", ...): all are listed in discovery.
    subresources: tuple[str, ...] = ()
    # Whether the object has a spec/status split: then main-resource updates
    # keep the stored status, `/status` updates keep everything else, and
    # `metadata.generation` counts spec changes.
    has_status: bool = False
    # Nodes may be created with their status (the kubelet registers a node with
    # its capacity); every other kind with a status starts with an empty one.
    status_on_create: bool = False
    # Pods bound to a node are deleted gracefully: the delete only marks them
    # (deletionTimestamp + grace period) and the node's kubelet removes them
    # once their containers have stopped.
    graceful_deletion: bool = False
    defaults: Callable[[Obj], None] = _no_defaults
    prepare_create: Callable[[Obj], None] = _no_defaults
    # Upstream's PrepareForUpdate: carry over what an update may leave out
    # (a Service's allocated clusterIP), given (new, old), before validation.
    prepare_update: Callable[[Obj, Obj], None] = _no_update
    validate: Callable[[Obj], list[Cause]] = _no_causes
    validate_update: Callable[[Obj, Obj], list[Cause]] = _no_update_causes
    columns: tuple[Column, ...] = (Column("Age", "string"),)
    row: Callable[[Obj], list[Any]] = _age_row
    # Field-selector fields beyond metadata.name and metadata.namespace.
    field_selectors: dict[str, Callable[[Obj], str]] = field(default_factory=dict)
    scale: Scale | None = None
    # The JSON-schema definition name in the Kubernetes OpenAPI
    # (io.k8s.api.apps.v1.Deployment); empty for custom resources.
    schema_name: str = ""
    # A custom resource's OpenAPI v3 schema (from its CRD), else None.
    custom_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.singular:
            object.__setattr__(self, "singular", self.kind.lower())

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def qualified_plural(self) -> str:
        """`deployments.apps`, as upstream names a resource in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def storage_prefix(self) -> str:
        """Keys are `/registry/[GROUP/]PLURAL/[NAMESPACE/]NAME`."""
        return (
            f"/registry/{self.group}/{self.plural}/" if self.group else f"/registry/{self.plural}/"
        )

    def key(self, namespace: str, name: str) -> str:
        if self.namespaced:
            return f"{self.storage_prefix}{namespace}/{name}"
        return f"{self.storage_prefix}{name}"

    def prefix(self, namespace: str = "") -> str:
        """The key prefix of every object of this kind, or of one namespace's."""
        if self.namespaced and namespace:
            return f"{self.storage_prefix}{namespace}/"
        return self.storage_prefix


class Registry:
    """The kinds the server serves, looked up by resource path or by apiVersion+kind.

    Built-in kinds are added once at start-up; custom resources come and go with
    their CRDs, so this is an instance, not a module global.
    """

    def __init__(self, kinds: Iterable[Kind] = ()) -> None:
        self._by_resource: dict[tuple[str, str, str], Kind] = {}
        self._by_kind: dict[tuple[str, str], Kind] = {}
        # Bumped on every change, so that derived documents (OpenAPI) know to rebuild.
        self.generation = 0
        for k in kinds:
            self.add(k)

    def add(self, kind: Kind) -> None:
        self._by_resource[(kind.group, kind.version, kind.plural)] = kind
        self._by_kind[(kind.api_version, kind.kind)] = kind
        self.generation += 1

    def remove(self, kind: Kind) -> None:
        self._by_resource.pop((kind.group, kind.version, kind.plural), None)
        self._by_kind.pop((kind.api_version, kind.kind), None)
        self.generation += 1

    def by_resource(self, group: str, version: str, plural: str) -> Kind | None:
        return self._by_resource.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> Kind | None:
        return self._by_kind.get((api_version, kind))

    def __iter__(self) -> Iterator[Kind]:
        return iter(list(self._by_resource.values()))

    def groups(self) -> dict[str, list[str]]:
        """Group name → its versions ("" is the core group)."""
        out: dict[str, list[str]] = {}
        for k in self._by_resource.values():
            versions = out.setdefault(k.group, [])
            if k.version not in versions:
                versions.append(k.version)
        return out
