"""Helpers for the Endpoints and EndpointSlice controller tests: Services, and pods whose
status (IP, phase, Ready) the test writes itself, as a kubelet would."""

from __future__ import annotations

from typing import Any

from nanokube.api import meta
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_service import SERVICE
from nanokube.client.interface import Client

Obj = dict[str, Any]
LABELS = {"app": "web"}


def service(name: str = "web", selector: dict[str, str] | None = LABELS, **spec: Any) -> Obj:
    body: Obj = {"metadata": {"name": name, "namespace": "default", "labels": {"team": "a"}}}
    body["spec"] = {"ports": [{"name": "http", "port": 80, "targetPort": "http"}], **spec}
    if selector is not None:
        body["spec"]["selector"] = selector
    return body


async def make_service(client: Client, name: str = "web", **kw: Any) -> Obj:
    return await client.create(SERVICE, service(name, **kw))


async def make_pod(
    client: Client,
    name: str,
    ip: str | None,
    *,
    ready: bool = True,
    node: str = "node-1",
    labels: dict[str, str] | None = None,
    ports: list[Obj] | None = None,
    finalizers: list[str] | None = None,
    **spec: Any,
) -> Obj:
    md: Obj = {"name": name, "namespace": "default", "labels": labels or LABELS}
    if finalizers:
        md["finalizers"] = finalizers
    container = {
        "name": "app",
        "image": "nginx",
        "ports": ports if ports is not None else [{"name": "http", "containerPort": 8080}],
    }
    pod = await client.create(
        POD, {"metadata": md, "spec": {"containers": [container], "nodeName": node, **spec}}
    )
    if ip is None:
        return pod
    return await set_status(client, pod, ip=ip, ready=ready)


async def set_status(
    client: Client,
    pod: Obj,
    *,
    ip: str,
    ready: bool,
    phase: str = "Running",
    since: str | None = None,
) -> Obj:
    """Write the pod's status; `since` is the Ready condition's transition time (now)."""
    current = await client.get(POD, meta.name(pod), meta.namespace(pod))
    current["status"] = {
        "phase": phase,
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": since or meta.now_rfc3339(),
            }
        ],
    }
    return await client.update(POD, current, subresource="status")
