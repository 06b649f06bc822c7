"""The served OpenAPI v3 documents (`/openapi/v3` and one document per group-version).

kubectl needs them for `apply`, `create -f`, `replace -f` (server-side field
validation is used only if the PATCH operations of the kind declare the
`fieldValidation` query parameter), for strategic merge patches (the PATCH
requestBody must list `application/strategic-merge-patch+json`, and the kind's
`components.schemas` entry must carry `x-kubernetes-group-version-kind` as an
array) and for `explain` (the GVK of the get/post/put/patch/delete operations
at the plain resource paths, then that schema). `/openapi/v2` is answered 404:
kubectl 1.33 asks for it in protobuf only and falls back to v3.

The documents follow upstream's layout: paths and operation ids as the
kube-apiserver names them, `components.schemas` converted from the
draft-2020-12 definitions of `nanokube.api.schema` (refs rewritten, nullable
types collapsed, a `$ref` with a description wrapped in `allOf` as upstream
does), holding every definition the group-version's kinds reach plus the meta
types. Custom resources get their CRD schema under upstream's name
(`com.example.v1.Widget`).

Documents are built on first request and cached per registry; the hash in the
index is a digest of everything a document is built from, so it changes
exactly when the document does, without building every document to serve the
index. A registry change (CRDs) is noticed through `Registry.generation`.
"""

from __future__ import annotations

import hashlib
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import orjson

from nanokube.api import schema
from nanokube.api.kinds import Kind, Registry

log = logging.getLogger(__name__)

Schema = dict[str, Any]

SERVER_VERSION = "v1.33.1"
COMPONENTS = "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
OBJECT_META = META + "ObjectMeta"
LIST_META = META + "ListMeta"
SCALE = "io.k8s.api.autoscaling.v1.Scale"
SCALE_GVK = {"group": "autoscaling", "kind": "Scale", "version": "v1"}
# Meta types every group-version document carries, as upstream's do.
META_TYPES = ("Status", "DeleteOptions", "Patch", "WatchEvent", "APIResourceList")
PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
# Definitions whose kubernetes-validate form (nullable oneOf) upstream's v3 publishes
# as plain oneOf, without a type: that is also what makes explain print `<IntOrString>`.
UPSTREAM_FORMS: dict[str, Schema] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "oneOf": [{"type": "string"}, {"type": "number"}]
    },
}
# Part of every document's hash: bump it when this module changes what it builds, since
# clients may cache a document by its hash for good.
LAYOUT_VERSION = 1
CACHE_LIMIT = 64  # documents kept per registry (one per group-version, old hashes age out)


# --- schema conversion ------------------------------------------------------------------


def _convert(s: Any) -> Any:
    """A draft-2020-12 definition node as OpenAPI 3.0, the way upstream publishes it."""
    if isinstance(s, list):
        return [_convert(v) for v in s]
    if not isinstance(s, dict):
        return s
    out: Schema = {}
    for key, value in s.items():
        if key == "$ref":
            out[key] = COMPONENTS + value[len(schema.REF_PREFIX) :]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out[key] = types[0] if len(types) == 1 else types
        elif key == "properties":
            out[key] = {p: _convert(v) for p, v in value.items()}
        elif key in ("enum", "required") or key.startswith("x-kubernetes"):
            out[key] = value
        else:
            out[key] = _convert(value)
    if "$ref" in out and len(out) > 1:  # OpenAPI 3.0 ignores a $ref's siblings
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _definition(name: str) -> Schema:
    raw = schema.definitions()[name]
    if name in UPSTREAM_FORMS:
        return {**UPSTREAM_FORMS[name], "description": raw.get("description", "")}
    converted: Schema = _convert(raw)
    if "x-kubernetes-group-version-kind" in raw:
        # kubernetes-validate pins apiVersion/kind with an enum; upstream does not.
        for prop in ("apiVersion", "kind"):
            converted.get("properties", {}).get(prop, {}).pop("enum", None)
    return converted


def _refs(s: Any, out: set[str]) -> None:
    if isinstance(s, dict):
        for key, value in s.items():
            if key == "$ref":
                out.add(value[len(schema.REF_PREFIX) :])
            elif key == "properties":
                for v in value.values():
                    _refs(v, out)
            elif key not in ("enum", "required") and not key.startswith("x-kubernetes"):
                _refs(value, out)
    elif isinstance(s, list):
        for v in s:
            _refs(v, out)


def _closure(names: set[str]) -> list[str]:
    """`names` and every definition they reach, sorted as upstream sorts them."""
    defs = schema.definitions()
    seen: set[str] = set()
    todo = {n for n in names if n in defs}
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            _refs(defs[name], todo)
            todo &= defs.keys()
    return sorted(seen)


def custom_schema_name(kind: Kind) -> str:
    """Upstream's component name of a custom resource: the group reversed
    (`example.com` → `com.example`), then version and kind."""
    return ".".join([*reversed(kind.group.split(".")), kind.version, kind.kind])


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def _custom_schemas(kind: Kind) -> dict[str, Schema]:
    """A CRD's schema with the implicit apiVersion/kind/metadata, and its List."""
    name = custom_schema_name(kind)
    body = dict(kind.custom_schema or {})
    props = dict(body.get("properties") or {})
    props.setdefault("apiVersion", {"type": "string", "description": _description("apiVersion")})
    props.setdefault("kind", {"type": "string", "description": _description("kind")})
    props["metadata"] = {
        "allOf": [{"$ref": COMPONENTS + OBJECT_META}],
        "description": _description("metadata"),
    }
    body.update(type="object", properties=props)
    body["x-kubernetes-group-version-kind"] = [_gvk(kind.group, kind.version, kind.kind)]
    listing = {
        "description": f"{kind.kind}List is a list of {kind.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": _description("apiVersion")},
            "items": {"type": "array", "items": {"$ref": COMPONENTS + name}},
            "kind": {"type": "string", "description": _description("kind")},
            "metadata": {
                "allOf": [{"$ref": COMPONENTS + LIST_META}],
                "description": _description("metadata"),
            },
        },
        "x-kubernetes-group-version-kind": [_gvk(kind.group, kind.version, kind.kind + "List")],
    }
    return {name: body, name + "List": listing}


def _description(prop: str) -> str:
    """Upstream's description of apiVersion, kind and metadata, as every kind has them."""
    return str(schema.definitions()["io.k8s.api.core.v1.Pod"]["properties"][prop]["description"])


# --- paths ------------------------------------------------------------------------------


def _param(name: str, where: str, description: str, type_: str = "string") -> Schema:
    p: Schema = {"name": name, "in": where, "description": description}
    p["schema"] = {"type": type_, "uniqueItems": True}
    if where == "path":
        p["required"] = True
    return p


def _query(*specs: tuple[str, str, str]) -> list[Schema]:
    return [_param(name, "query", description, type_) for name, type_, description in specs]


PRETTY = _param("pretty", "query", "If 'true', then the output is pretty printed.")
NAME = _param("name", "path", "name of the resource")
NAMESPACE = _param(
    "namespace", "path", "object name and auth scope, such as for teams and projects"
)
WRITE_PARAMS = _query(
    ("dryRun", "string", "When present, indicates that modifications should not be persisted."),
    ("fieldManager", "string", "a name associated with the actor making these changes."),
    (
        "fieldValidation",
        "string",
        "fieldValidation instructs the server on how to handle objects in the request "
        "(POST/PUT/PATCH) containing unknown or duplicate fields: Ignore, Warn or Strict.",
    ),
)
PATCH_PARAMS = [*WRITE_PARAMS, *_query(("force", "boolean", '"force" Apply requests.'))]
LIST_PARAMS = _query(
    ("allowWatchBookmarks", "boolean", 'requests watch events with type "BOOKMARK".'),
    ("continue", "string", "continue a list from where a previous call stopped."),
    ("fieldSelector", "string", "restrict the list of returned objects by their fields."),
    ("labelSelector", "string", "restrict the list of returned objects by their labels."),
    ("limit", "integer", "the maximum number of responses to return for a list call."),
    ("resourceVersion", "string", "what resource versions a request may be served from."),
    ("resourceVersionMatch", "string", "how resourceVersion is applied to list calls."),
    ("sendInitialEvents", "boolean", "send the current objects first, with watch=true."),
    ("timeoutSeconds", "integer", "Timeout for the list/watch call."),
    ("watch", "boolean", "Watch for changes to the described resources."),
)
DELETE_PARAMS = [
    WRITE_PARAMS[0],
    *_query(
        ("gracePeriodSeconds", "integer", "The seconds before the object should be deleted."),
        ("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy."),
        ("propagationPolicy", "string", "Whether and how garbage collection will be performed."),
    ),
]
# Operations by x-kubernetes-action: (HTTP method, operationId verb, description).
COLLECTION_OPS = {
    "list": ("get", "list", "list or watch objects of kind {kind}"),
    "post": ("post", "create", "create a {kind}"),
    "deletecollection": ("delete", "delete{collection}", "delete collection of {kind}"),
}
ITEM_OPS = {
    "get": ("get", "read", "read the specified {kind}"),
    "put": ("put", "replace", "replace the specified {kind}"),
    "patch": ("patch", "patch", "partially update the specified {kind}"),
    "delete": ("delete", "delete", "delete a {kind}"),
}
SUB_DESCRIPTIONS = {
    "get": "read {sub} of the specified {{kind}}",
    "put": "replace {sub} of the specified {{kind}}",
    "patch": "partially update {sub} of the specified {{kind}}",
}
VERB_ACTIONS = {"create": "post", "update": "put", "deletecollection": "deletecollection"}


def _content(ref: str) -> Schema:
    return {"application/json": {"schema": {"$ref": COMPONENTS + ref}}} if ref else {}


def _response(ref: str, *codes: str) -> Schema:
    descriptions = {"200": "OK", "201": "Created", "202": "Accepted"}
    out: Schema = {c: {"description": descriptions[c], "content": _content(ref)} for c in codes}
    out["401"] = {"description": "Unauthorized"}
    return out


def _patch_body(kind: Kind) -> Schema:
    """Custom resources take no strategic merge patch upstream; not listing it is what
    makes kubectl apply send them a JSON merge patch instead."""
    patch = {"schema": {"$ref": COMPONENTS + META + "Patch"}}
    types = [t for t in PATCH_TYPES if kind.custom_schema is None or "strategic" not in t]
    return {"content": {t: patch for t in types}, "required": True}


def _camel_group(group: str) -> str:
    if not group:
        return "Core"
    return "".join(w[:1].upper() + w[1:] for w in group.removesuffix(".k8s.io").split("."))


def _tag(group: str, version: str) -> str:
    return f"{group.removesuffix('.k8s.io').split('.')[0] or 'core'}_{version}"


@dataclass
class _Resource:
    """What one resource's operations are built from."""

    kind: Kind
    ref: str  # component name of the kind ("" if the schemas have none)
    list_ref: str

    def operation(self, action: str, op_id: str, description: str, sub: str = "") -> Schema:
        """One operation as upstream declares it: parameters, body and responses by action."""
        k, ref, gvk = self.kind, self.ref, _gvk(self.kind.group, self.kind.version, self.kind.kind)
        if sub == "scale":
            ref, gvk = SCALE, SCALE_GVK
        body: Schema = {}
        if action == "list":
            body = {"parameters": LIST_PARAMS, "responses": _response(self.list_ref, "200")}
        elif action == "get":
            body = {"responses": _response(ref, "200")}
        elif action in ("post", "put"):
            codes: tuple[str, ...] = ("200", "201", "202") if action == "post" else ("200", "201")
            request = {"content": _content(ref), "required": True}
            body = {
                "parameters": WRITE_PARAMS,
                "requestBody": request,
                "responses": _response(ref, *codes),
            }
        elif action == "patch":
            body = {"parameters": PATCH_PARAMS, "requestBody": _patch_body(k)}
            body["responses"] = _response(ref, "200", "201")
        else:  # delete, deletecollection
            params = DELETE_PARAMS if action == "delete" else [*DELETE_PARAMS, *LIST_PARAMS]
            request = {"content": _content(META + "DeleteOptions"), "required": False}
            codes = ("200", "202") if action == "delete" else ("200",)
            body = {"parameters": params, "requestBody": request}
            body["responses"] = _response(META + "Status", *codes)
        return {
            "tags": [_tag(k.group, k.version)],
            "description": description.format(kind=k.kind),
            "operationId": op_id,
            **body,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        }

    def paths(self, prefix: str) -> dict[str, Schema]:
        """Upstream's paths: collection, item, generic subresources, all-namespaces list."""
        k = self.kind
        scope = "Namespaced" if k.namespaced else ""
        gv = _camel_group(k.group) + k.version.capitalize()
        base = (
            f"{prefix}/namespaces/{{namespace}}/{k.plural}"
            if k.namespaced
            else f"{prefix}/{k.plural}"
        )
        scope_params = [NAMESPACE] if k.namespaced else []
        actions = {VERB_ACTIONS.get(v, v) for v in k.verbs}
        out: dict[str, Schema] = {}

        def add(
            path: str, ops: dict[str, tuple[str, str, str]], params: list[Schema], sub: str = ""
        ) -> None:
            item: Schema = {}
            for action, (method, verb, description) in ops.items():
                if sub or action in actions:
                    op_id = verb.format(collection=gv + "Collection") + ("" if "{" in verb else gv)
                    op_id += f"{scope}{k.kind}{sub.capitalize()}"
                    item[method] = self.operation(action, op_id, description, sub)
            if item:
                out[path] = {**item, "parameters": params}

        add(base, COLLECTION_OPS, [*scope_params, PRETTY])
        add(f"{base}/{{name}}", ITEM_OPS, [NAME, *scope_params, PRETTY])
        for sub in ("status", "scale"):
            if sub in k.subresources:
                ops = {
                    a: (m, p, SUB_DESCRIPTIONS[a].format(sub=sub))
                    for a, (m, p, _) in ITEM_OPS.items()
                    if a in SUB_DESCRIPTIONS
                }
                add(f"{base}/{{name}}/{sub}", ops, [NAME, *scope_params, PRETTY], sub)
        if k.namespaced and "list" in actions:
            # Upstream's cross-namespace list (`kubectl get -A`), one of explain's paths.
            description = COLLECTION_OPS["list"][2]
            op = self.operation("list", f"list{gv}{k.kind}ForAllNamespaces", description)
            out[f"{prefix}/{k.plural}"] = {"get": op, "parameters": [PRETTY]}
        return out


# --- documents --------------------------------------------------------------------------


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _gv_kinds(registry: Registry) -> dict[str, list[Kind]]:
    out: dict[str, list[Kind]] = {}
    for k in registry:
        out.setdefault(_gv_path(k.group, k.version), []).append(k)
    for kinds in out.values():
        kinds.sort(key=lambda k: k.plural)
    return out


def _builtin_name(kind: Kind) -> str:
    return kind.schema_name or schema.definition_for(kind.group, kind.version, kind.kind)


def _gv_document(path: str, kinds: list[Kind]) -> Schema:
    paths: dict[str, Schema] = {}
    wanted = {META + t for t in META_TYPES}
    extra: dict[str, Schema] = {}
    group, version = kinds[0].group, kinds[0].version
    paths["/" + path + "/"] = {
        "get": {
            "tags": [_tag(group, version)],
            "description": "get available resources",
            "operationId": f"get{_camel_group(group)}{version.capitalize()}APIResources",
            "responses": _response(META + "APIResourceList", "200"),
        }
    }
    for k in kinds:
        if k.custom_schema is not None:
            schemas = _custom_schemas(k)
            extra.update(schemas)
            ref, list_ref = custom_schema_name(k), custom_schema_name(k) + "List"
            wanted.add(OBJECT_META)
            wanted.add(LIST_META)
        else:
            ref = _builtin_name(k)
            list_ref = ref + "List" if ref + "List" in schema.definitions() else ""
            wanted.update(n for n in (ref, list_ref) if n)
        if "scale" in k.subresources:
            wanted.add(SCALE)
        paths.update(_Resource(k, ref, list_ref).paths("/" + path))
    components = {name: _definition(name) for name in _closure(wanted)}
    components.update(extra)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(components.items()))},
    }


def _root_document(path: str) -> Schema:
    """The discovery documents `api`, `apis` and `apis/GROUP`."""
    if path == "api":
        ref, op_id = META + "APIVersions", "getCoreAPIVersions"
    elif path == "apis":
        ref, op_id = META + "APIGroupList", "getAPIVersions"
    else:
        ref, op_id = META + "APIGroup", f"get{_camel_group(path[5:])}APIGroup"
    get = {
        "description": "get available API versions",
        "operationId": op_id,
        "responses": _response(ref, "200"),
    }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION},
        "paths": {"/" + path + "/": {"get": get}},
        "components": {"schemas": {n: _definition(n) for n in _closure({ref})}},
    }


def _inputs_digest(path: str, kinds: list[Kind]) -> str:
    """Everything the document at `path` is built from, hashed (see the module docstring)."""
    inputs: list[Any] = [LAYOUT_VERSION, schema.SCHEMA_VERSION, SERVER_VERSION, path]
    for k in kinds:
        inputs.append(
            [
                k.kind,
                k.plural,
                k.namespaced,
                list(k.verbs),
                list(k.subresources),
                k.schema_name,
                k.custom_schema,
            ]
        )
    digest = hashlib.sha512(orjson.dumps(inputs, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest().upper()


@dataclass
class _Cache:
    generation: int = -1
    index: bytes = b""
    kinds: dict[str, list[Kind]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)  # path → hash
    documents: dict[str, bytes] = field(default_factory=dict)  # hash → body


_caches: weakref.WeakKeyDictionary[Registry, _Cache] = weakref.WeakKeyDictionary()


def _cache(registry: Registry) -> _Cache:
    cache = _caches.get(registry)
    if cache is None:
        cache = _caches[registry] = _Cache()
    generation = getattr(registry, "generation", 0)
    if cache.generation != generation:
        cache.generation = generation
        cache.kinds = _gv_kinds(registry)
        roots = ["api", "apis", *sorted({f"apis/{k.group}" for k in registry if k.group})]
        cache.hashes = {
            p: _inputs_digest(p, cache.kinds.get(p, [])) for p in [*roots, *cache.kinds]
        }
        paths = {
            p: {"serverRelativeURL": f"/openapi/v3/{p}?hash={h}"}
            for p, h in sorted(cache.hashes.items())
        }
        cache.index = orjson.dumps({"paths": paths})
        if len(cache.documents) > CACHE_LIMIT:
            cache.documents.clear()
    return cache


def v3_index(registry: Registry) -> bytes:
    """The `/openapi/v3` discovery document: each group-version's path and content hash."""
    return _cache(registry).index


def v3_document(registry: Registry, path: str) -> bytes | None:
    """The document at `/openapi/v3/<path>` (`api/v1`, `apis/apps/v1`, `apis`...), or None."""
    cache = _cache(registry)
    path = path.strip("/")
    digest = cache.hashes.get(path)
    if digest is None:
        return None
    body = cache.documents.get(digest)
    if body is None:
        started = time.perf_counter()
        kinds = cache.kinds.get(path)
        document = _gv_document(path, kinds) if kinds else _root_document(path)
        body = cache.documents[digest] = orjson.dumps(document)
        log.info(
            "built openapi path=%s bytes=%d ms=%.1f",
            path,
            len(body),
            (time.perf_counter() - started) * 1000,
        )
    return body


def v3_hash(registry: Registry, path: str) -> str:
    """The content hash of the document at `path` (for ETag / Cache-Control handling)."""
    return _cache(registry).hashes.get(path.strip("/"), "")
