"""The `pods/binding` subresource: how a scheduler assigns a pod to a node.

Upstream's `BindingREST` (`pkg/registry/core/pod/storage/storage.go`): a POST of a
`Binding` (metadata.name = the pod, `target` = the node) sets the pod's
`spec.nodeName`, merges the binding's annotations into the pod's, and marks the
pod's `PodScheduled` condition True, in one compare-and-swap write. A pod that
is already assigned, being deleted or still gated cannot be bound (409
Conflict on `pods/binding`), and a binding may carry the pod's uid and
resourceVersion as preconditions. The answer is a `Status` Success, code 201.

`nodeName` is immutable through ordinary updates (pod validation forbids the
change), so the write bypasses the update admission and goes straight to the
registry's compare-and-swap, as upstream's `GuaranteedUpdate` does.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from nanokube.api import errors, meta
from nanokube.api.errors import Cause
from nanokube.api.options import WriteOptions
from nanokube.api.resources import builtin_kinds
from nanokube.apiserver import codec
from nanokube.apiserver.requestinfo import RequestInfo

if TYPE_CHECKING:
    from nanokube.apiserver.handlers import ResourceHandler
    from nanokube.apiserver.rest import ResourceStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]

_POD = next(k for k in builtin_kinds() if k.group == "" and k.kind == "Pod")
_ATTEMPTS = 5  # compare-and-swap retries when a kubelet or controller writes the pod meanwhile


def _validate(binding: Obj) -> None:
    """`ValidatePodBinding`: the target is a Node, by name."""
    target = binding.get("target") or {}
    causes: list[Cause] = []
    if target.get("kind") not in (None, "", "Node"):
        causes.append(
            Cause(
                "target.kind",
                f'Unsupported value: "{target.get("kind")}": supported values: "Node", "<empty>"',
                "FieldValueNotSupported",
            )
        )
    if not target.get("name"):
        causes.append(Cause("target.name", "Required value", "FieldValueRequired"))
    if causes:
        name = (binding.get("metadata") or {}).get("name", "")
        raise errors.invalid("Binding", name, causes)


def _binding_conflict(pod_name: str, message: str) -> errors.Conflict:
    return errors.Conflict(
        f'Operation cannot be fulfilled on pods/binding "{pod_name}": {message}',
        kind="pods/binding",
        name=pod_name,
    )


def _assign(pod: Obj, node: str, annotations: Obj, preconditions: Obj) -> None:
    """Upstream's `setPodNodeAndMetadata`, on a copy of the stored pod."""
    md = pod["metadata"]
    name = md["name"]
    if preconditions.get("uid") and preconditions["uid"] != md.get("uid"):
        raise _binding_conflict(
            name,
            f"Precondition failed: UID in precondition: {preconditions['uid']}, "
            f"UID in object meta: {md.get('uid')}",
        )
    rv = preconditions.get("resourceVersion")
    if rv and rv != md.get("resourceVersion"):
        raise _binding_conflict(
            name,
            f"Precondition failed: ResourceVersion in precondition: {rv}, "
            f"ResourceVersion in object meta: {md.get('resourceVersion')}",
        )
    if md.get("deletionTimestamp"):
        raise _binding_conflict(name, f"pod {name} is being deleted, cannot be assigned to a host")
    spec = pod.setdefault("spec", {})
    if spec.get("nodeName"):
        raise _binding_conflict(
            name, f'pod {name} is already assigned to node "{spec["nodeName"]}"'
        )
    if spec.get("schedulingGates"):
        raise _binding_conflict(name, f"pod {name} has non-empty .spec.schedulingGates")
    spec["nodeName"] = node
    if annotations:
        md["annotations"] = {**(md.get("annotations") or {}), **annotations}
    status = pod.setdefault("status", {})
    conditions = status.setdefault("conditions", [])
    now = meta.now_rfc3339()
    for cond in conditions:
        if cond.get("type") == "PodScheduled":
            if cond.get("status") != "True":
                cond["lastTransitionTime"] = now
            cond["status"] = "True"
            cond.pop("reason", None)
            cond.pop("message", None)
            break
    else:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": now,
            }
        )


async def bind(resources: ResourceStore, namespace: str, pod_name: str, binding: Obj) -> Obj:
    """Bind pod `namespace/pod_name` to `binding.target.name`; a Status Success on 201."""
    if not isinstance(binding, dict):
        raise errors.BadRequest("the body of the request was in an unknown format")
    md = binding.get("metadata") or {}
    if md.get("name") and md["name"] != pod_name:
        raise errors.BadRequest("name in URL does not match name in Binding object")
    _validate(binding)
    node = binding["target"]["name"]
    preconditions = {"uid": md.get("uid", ""), "resourceVersion": md.get("resourceVersion", "")}
    for attempt in range(_ATTEMPTS):
        old = await resources.get(_POD, namespace, pod_name)
        new = copy.deepcopy(old)
        _assign(new, node, md.get("annotations") or {}, preconditions)
        try:
            await resources.write(_POD, namespace, pod_name, old, new, WriteOptions())
        except errors.Conflict:
            if attempt == _ATTEMPTS - 1:
                raise
            continue
        log.debug("bound pod=%s/%s node=%s", namespace, pod_name, node)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        }
    raise AssertionError("unreachable")


def register(handler: ResourceHandler) -> None:
    """Serve POST `pods/{name}/binding` from `handler` (the HTTP side of `bind`)."""

    async def handle(request: web.Request, info: RequestInfo) -> web.StreamResponse:
        if request.method != "POST":
            raise errors.MethodNotAllowed(
                "the server does not allow this method on the requested resource"
            )
        body = codec.decode_body(await request.read(), codec.media_type(request))
        result = await bind(handler.store, info.namespace, info.name, body)
        return codec.json_response(result, 201)

    handler.subresource_handlers[("pods", "binding")] = handle
