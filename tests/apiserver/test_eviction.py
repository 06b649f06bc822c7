"""`pods/eviction` over HTTP and through the in-process client.

Aspects: no budget means delete; a budget with no disruptions left refuses
with 429 and upstream's message and cause; a budget with room is decremented,
records the pod in `disruptedPods` and the pod gets the DisruptionTarget
condition; Pending pods skip the budget; a budget not yet observed asks for a
retry; two budgets are an error; unready pods and the unhealthy-pod policy;
dry runs change nothing; malformed requests.
"""

from __future__ import annotations

from typing import Any

import pytest

from nanokube.api import errors
from nanokube.api.resources.core import POD
from nanokube.apiserver import eviction, patching
from nanokube.apiserver.server import APIServer
from nanokube.client.inprocess import InProcessClient

PODS = "/api/v1/namespaces/default/pods"
PDBS = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"


@pytest.fixture(autouse=True)
def _serve_eviction(server: APIServer) -> None:
    eviction.register(server.handler)


def _eviction(name: str, **delete_options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": "default"},
    }
    if delete_options:
        body["deleteOptions"] = delete_options
    return body


async def make_pod(
    client: Any, name: str, phase: str = "Running", ready: bool = True, node: str = ""
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    status, pod = await client.post(
        PODS, {"metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec}
    )
    assert status == 201, pod
    pod["status"] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    status, pod = await client.put(f"{PODS}/{name}/status", pod)
    assert status == 200, pod
    return pod


async def make_pdb(
    client: Any, name: str, allowed: int, healthy: int = 2, desired: int = 2, **spec: Any
) -> dict[str, Any]:
    body = {
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": desired, **spec},
    }
    status, pdb = await client.post(PDBS, body)
    assert status == 201, pdb
    pdb["status"] = {
        "observedGeneration": pdb["metadata"]["generation"],
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": healthy,
    }
    status, pdb = await client.put(f"{PDBS}/{name}/status", pdb)
    assert status == 200, pdb
    return pdb


async def test_without_a_budget_the_pod_is_deleted(client: Any) -> None:
    await make_pod(client, "web-1")
    status, out = await client.post(f"{PODS}/web-1/eviction", _eviction("web-1"))
    assert status == 201
    assert out == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }
    status, _ = await client.get(f"{PODS}/web-1")
    assert status == 404


async def test_a_spent_budget_refuses_with_429(client: Any) -> None:
    await make_pod(client, "web-1")
    await make_pdb(client, "web", allowed=0, healthy=1, desired=2)
    status, out, resp = await client.request("POST", f"{PODS}/web-1/eviction", _eviction("web-1"))
    assert status == 429
    assert out["reason"] == "TooManyRequests"
    assert out["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert out["details"]["causes"][0]["reason"] == "DisruptionBudget"
    assert out["details"]["causes"][0]["message"] == (
        "The disruption budget web needs 2 healthy pods and has 1 currently"
    )
    status, _ = await client.get(f"{PODS}/web-1")
    assert status == 200


async def test_a_budget_with_room_is_spent_and_the_pod_marked(client: Any) -> None:
    await make_pod(client, "web-1", node="node-1")  # scheduled: deleted gracefully, so still seen
    await make_pdb(client, "web", allowed=1, healthy=3, desired=2)
    status, _ = await client.post(f"{PODS}/web-1/eviction", _eviction("web-1"))
    assert status == 201
    _, pdb = await client.get(f"{PDBS}/web")
    assert pdb["status"]["disruptionsAllowed"] == 0
    assert "web-1" in pdb["status"]["disruptedPods"]
    cond = pdb["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "DisruptionAllowed",
        "False",
        "InsufficientPods",
    )
    _, pod = await client.get(f"{PODS}/web-1")
    assert pod["metadata"]["deletionTimestamp"]
    target = [c for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget"][0]
    assert (target["status"], target["reason"]) == ("True", "EvictionByEvictionAPI")


async def test_grace_period_from_delete_options(client: Any) -> None:
    await make_pod(client, "web-1", node="node-1")
    status, _ = await client.post(
        f"{PODS}/web-1/eviction", _eviction("web-1", gracePeriodSeconds=0)
    )
    assert status == 201
    status, _ = await client.get(f"{PODS}/web-1")
    assert status == 404


@pytest.mark.parametrize("phase", ["Pending", "Succeeded", "Failed"])
async def test_pods_not_running_skip_the_budget(client: Any, phase: str) -> None:
    await make_pod(client, "web-1", phase=phase, ready=False)
    await make_pdb(client, "web", allowed=0)
    status, _ = await client.post(f"{PODS}/web-1/eviction", _eviction("web-1"))
    assert status == 201
    _, pdb = await client.get(f"{PDBS}/web")
    assert pdb["status"]["disruptionsAllowed"] == 0
    assert "disruptedPods" not in pdb["status"]


async def test_a_budget_not_yet_observed_asks_for_a_retry(client: Any) -> None:
    await make_pod(client, "web-1")
    status, pdb = await client.post(
        PDBS, {"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}}
    )
    assert status == 201
    status, out, resp = await client.request("POST", f"{PODS}/web-1/eviction", _eviction("web-1"))
    assert status == 429
    assert resp.headers["Retry-After"] == "10"
    assert out["details"]["causes"][0]["message"] == (
        "The disruption budget web is still being processed by the server."
    )


async def test_two_budgets_are_an_error(client: Any) -> None:
    await make_pod(client, "web-1")
    await make_pdb(client, "one", allowed=1)
    await make_pdb(client, "two", allowed=1)
    status, out = await client.post(f"{PODS}/web-1/eviction", _eviction("web-1"))
    assert status == 500
    assert "more than one PodDisruptionBudget" in out["message"]


async def test_a_budget_selecting_other_pods_does_not_apply(client: Any) -> None:
    await make_pod(client, "web-1")
    await client.post(
        PDBS, {"metadata": {"name": "db"}, "spec": {"selector": {"matchLabels": {"app": "db"}}}}
    )
    status, _ = await client.post(f"{PODS}/web-1/eviction", _eviction("web-1"))
    assert status == 201


async def test_unready_pod_goes_when_the_budget_is_met(client: Any) -> None:
    await make_pod(client, "web-1", ready=False)
    await make_pdb(client, "web", allowed=0, healthy=2, desired=2)
    status, _ = await client.post(f"{PODS}/web-1/eviction", _eviction("web-1"))
    assert status == 201
    _, pdb = await client.get(f"{PDBS}/web")
    assert pdb["status"]["disruptionsAllowed"] == 0  # not spent


async def test_unready_pod_with_an_unmet_budget(client: Any) -> None:
    await make_pod(client, "web-1", ready=False)
    await make_pdb(client, "web", allowed=0, healthy=1, desired=2)
    status, _ = await client.post(f"{PODS}/web-1/eviction", _eviction("web-1"))
    assert status == 429
    await make_pod(client, "web-2", ready=False)
    await client.delete(f"{PDBS}/web")
    await make_pdb(
        client, "web", allowed=0, healthy=1, desired=2, unhealthyPodEvictionPolicy="AlwaysAllow"
    )
    status, _ = await client.post(f"{PODS}/web-2/eviction", _eviction("web-2"))
    assert status == 201


async def test_dry_run_changes_nothing(client: Any) -> None:
    await make_pod(client, "web-1")
    await make_pdb(client, "web", allowed=1)
    status, _ = await client.post(f"{PODS}/web-1/eviction?dryRun=All", _eviction("web-1"))
    assert status == 201
    status, _ = await client.post(f"{PODS}/web-1/eviction", _eviction("web-1", dryRun=["All"]))
    assert status == 201
    status, pod = await client.get(f"{PODS}/web-1")
    assert status == 200 and "deletionTimestamp" not in pod["metadata"]
    _, pdb = await client.get(f"{PDBS}/web")
    assert pdb["status"]["disruptionsAllowed"] == 1


async def test_malformed_requests(client: Any) -> None:
    await make_pod(client, "web-1")
    status, out = await client.post(f"{PODS}/web-1/eviction", _eviction("other"))
    assert status == 400
    assert out["message"] == "name in URL does not match name in Eviction object"
    status, _ = await client.post(f"{PODS}/missing/eviction", _eviction("missing"))
    assert status == 404
    status, _ = await client.get(f"{PODS}/web-1/eviction")
    assert status == 405


async def test_in_process_client_evicts_through_the_mapping(server: APIServer, client: Any) -> None:
    await make_pod(client, "web-1")
    await make_pdb(client, "web", allowed=0)
    inproc = InProcessClient(
        server.resources, patching.patch, {("pods", "eviction"): eviction.evict}
    )
    with pytest.raises(errors.TooManyRequests):
        await inproc.create_subresource(POD, "web-1", "default", "eviction", _eviction("web-1"))
    await make_pod(client, "web-2", phase="Pending")
    out = await inproc.create_subresource(POD, "web-2", "default", "eviction", _eviction("web-2"))
    assert out["status"] == "Success"
