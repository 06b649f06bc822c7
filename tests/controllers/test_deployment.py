"""The Deployment controller (with the ReplicaSet controller) against a real API server.

Aspects: the first rollout (ReplicaSet `<name>-<hash>`, revision and size
annotations, status and conditions, the ScalingReplicaSet event), scaling,
rolling updates that keep within maxSurge and maxUnavailable, revisions and
rollback by putting an old template back (as `kubectl rollout undo` does),
`rollout restart`, pausing, Recreate, and cleanup beyond revisionHistoryLimit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from controller_harness import Kubelet, eventually, pod_template, running

from nanokube.api import meta
from nanokube.api.resources.apps import DEPLOYMENT, REPLICA_SET
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_event import EVENT
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import JSON_PATCH, Client
from nanokube.controllers import deployment_util as du
from nanokube.controllers.deployment import DeploymentController
from nanokube.controllers.replicaset import ReplicaSetController

CLIENTS = ("in-process", "http")  # every test runs over both clients
Obj = dict[str, Any]
LABELS = {"app": "web"}


def deployment(replicas: int = 3, image: str = "nginx:1.25", **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": pod_template(LABELS, image),
            **spec,
        },
    }


@contextlib.asynccontextmanager
async def controllers(client: Client, informers: SharedInformerFactory) -> AsyncIterator[None]:
    rs = ReplicaSetController(client, informers)
    dc = DeploymentController(client, informers)
    async with running(informers, rs, dc):
        yield


async def replica_sets(client: Client) -> list[Obj]:
    items = (await client.list(REPLICA_SET, "default"))["items"]
    return sorted(items, key=du.revision)


async def live_pods(client: Client) -> list[Obj]:
    items = (await client.list(POD, "default"))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def rollout_done(d: Obj) -> bool:
    """What `kubectl rollout status` waits for."""
    status, want = d.get("status") or {}, d["spec"]["replicas"]
    return (
        d["metadata"]["generation"] <= status.get("observedGeneration", 0)
        and status.get("updatedReplicas", 0) >= want
        and status.get("replicas", 0) == status.get("updatedReplicas", 0)
        and status.get("availableReplicas", 0) >= status.get("updatedReplicas", 0)
    )


async def wait_rolled_out(client: Client) -> Obj:
    async def check() -> Obj | None:
        d = await client.get(DEPLOYMENT, "web", "default")
        pods = await live_pods(client)
        return d if rollout_done(d) and len(pods) == d["spec"]["replicas"] else None

    return await eventually(check)


def condition(d: Obj, type: str) -> Obj:
    return next(c for c in d["status"]["conditions"] if c["type"] == type)


async def test_first_rollout(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    kubelet.auto_ready = True
    async with controllers(client, informers):
        await client.create(DEPLOYMENT, deployment())
        d = await wait_rolled_out(client)
        (rs,) = await replica_sets(client)
        pod_hash = rs["metadata"]["labels"][du.HASH_LABEL]
        assert rs["metadata"]["name"] == f"web-{pod_hash}"
        assert set(pod_hash) <= set("bcdfghjklmnpqrstvwxz2456789")
        assert rs["spec"]["selector"]["matchLabels"] == {**LABELS, du.HASH_LABEL: pod_hash}
        assert rs["spec"]["template"]["metadata"]["labels"][du.HASH_LABEL] == pod_hash
        notes = rs["metadata"]["annotations"]
        assert notes[du.REVISION] == "1"
        assert notes[du.DESIRED_REPLICAS] == "3"
        assert notes[du.MAX_REPLICAS] == "4"  # 3 + 25% surge rounded up
        assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
        for pod in await live_pods(client):
            assert pod["metadata"]["labels"][du.HASH_LABEL] == pod_hash

        status = d["status"]
        assert status["replicas"] == status["updatedReplicas"] == 3
        assert status["readyReplicas"] == status["availableReplicas"] == 3
        assert "unavailableReplicas" not in status
        assert d["metadata"]["annotations"][du.REVISION] == "1"
        available = condition(d, "Available")
        assert (available["status"], available["reason"]) == ("True", "MinimumReplicasAvailable")
        assert available["message"] == "Deployment has minimum availability."

        async def progressed() -> Obj | None:
            d = await client.get(DEPLOYMENT, "web", "default")
            cond = condition(d, "Progressing")
            return cond if cond["reason"] == "NewReplicaSetAvailable" else None

        cond = await eventually(progressed)
        assert cond["status"] == "True"
        assert cond["message"] == f'ReplicaSet "web-{pod_hash}" has successfully progressed.'

        async def scaled_event() -> list[str] | None:
            items = (await client.list(EVENT, "default"))["items"]
            found = [e["message"] for e in items if e["reason"] == "ScalingReplicaSet"]
            return found or None

        assert await eventually(scaled_event) == [
            f"Scaled up replica set web-{pod_hash} from 0 to 3"
        ]


async def test_scaling(client: Client, informers: SharedInformerFactory, kubelet: Kubelet) -> None:
    kubelet.auto_ready = True
    async with controllers(client, informers):
        await client.create(DEPLOYMENT, deployment(replicas=2))
        await wait_rolled_out(client)
        await client.patch(DEPLOYMENT, "web", {"spec": {"replicas": 5}}, "default")
        d = await wait_rolled_out(client)
        assert d["status"]["availableReplicas"] == 5
        (rs,) = await replica_sets(client)
        assert rs["spec"]["replicas"] == 5
        assert rs["metadata"]["annotations"][du.DESIRED_REPLICAS] == "5"
        await client.patch(DEPLOYMENT, "web", {"spec": {"replicas": 1}}, "default")
        await wait_rolled_out(client)
        assert len(await live_pods(client)) == 1


class RolloutWatch:
    """Watches pods during a rollout and records the worst moments seen."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.pods: dict[str, Obj] = {}
        self.max_pods = 0
        self.min_ready: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listed = await self.client.list(POD, "default")
        self.pods = {meta.name(p): p for p in listed["items"]}
        rv = listed["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._run(rv))

    async def _run(self, rv: str) -> None:
        async for etype, pod in self.client.watch(POD, "default", resource_version=rv):
            if etype == "DELETED" or pod["metadata"].get("deletionTimestamp"):
                self.pods.pop(meta.name(pod), None)
            else:
                self.pods[meta.name(pod)] = pod
            ready = sum(
                1
                for p in self.pods.values()
                for c in (p.get("status") or {}).get("conditions") or ()
                if c["type"] == "Ready" and c["status"] == "True"
            )
            self.max_pods = max(self.max_pods, len(self.pods))
            self.min_ready = ready if self.min_ready is None else min(self.min_ready, ready)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def test_rolling_update_keeps_within_surge_and_unavailability(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    kubelet.auto_ready = True
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}
    async with controllers(client, informers):
        await client.create(DEPLOYMENT, deployment(replicas=4, strategy=strategy))
        await wait_rolled_out(client)
        watch = RolloutWatch(client)
        await watch.start()
        template = {
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}
        }
        await client.patch(DEPLOYMENT, "web", template, "default")
        d = await wait_rolled_out(client)
        await watch.stop()
        assert watch.max_pods <= 4 + 1
        assert watch.min_ready is not None and watch.min_ready >= 4 - 1
        old, new = await replica_sets(client)
        assert (du.revision(old), du.revision(new)) == (1, 2)
        assert (old["spec"]["replicas"], new["spec"]["replicas"]) == (0, 4)
        assert d["metadata"]["annotations"][du.REVISION] == "2"
        for pod in await live_pods(client):
            assert pod["spec"]["containers"][0]["image"] == "nginx:1.26"


async def test_percentages_round_surge_up_and_unavailability_down(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    kubelet.auto_ready = True
    async with controllers(client, informers):
        # 25% of 3: surge ceil(0.75) = 1, unavailable floor(0.75) = 0.
        await client.create(DEPLOYMENT, deployment(replicas=3))
        await wait_rolled_out(client)
        watch = RolloutWatch(client)
        await watch.start()
        await client.patch(
            DEPLOYMENT,
            "web",
            {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}},
            "default",
        )
        await wait_rolled_out(client)
        await watch.stop()
        assert watch.max_pods <= 4
        assert watch.min_ready == 3


async def test_rollback_by_template_and_restart(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    kubelet.auto_ready = True
    async with controllers(client, informers):
        await client.create(DEPLOYMENT, deployment(replicas=2))
        await wait_rolled_out(client)
        v2 = {
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}
        }
        await client.patch(DEPLOYMENT, "web", v2, "default")
        await wait_rolled_out(client)
        first, second = await replica_sets(client)

        # `kubectl rollout undo` sends this JSON patch: the old ReplicaSet's template
        # without its hash label, and its annotations but for the controller's own.
        template = du.template_of(first)
        template["metadata"]["labels"].pop(du.HASH_LABEL)
        current = await client.get(DEPLOYMENT, "web", "default")
        own = {du.REVISION, du.REVISION_HISTORY, du.DESIRED_REPLICAS, du.MAX_REPLICAS}
        annotations = {k: v for k, v in du.annotations_of(current).items() if k in own}
        annotations.update({k: v for k, v in du.annotations_of(first).items() if k not in own})
        undo = [
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations},
        ]
        await client.patch(DEPLOYMENT, "web", undo, "default", patch_type=JSON_PATCH)
        d = await wait_rolled_out(client)
        rss = {rs["metadata"]["name"]: rs for rs in await replica_sets(client)}
        assert len(rss) == 2
        back = rss[first["metadata"]["name"]]
        assert back["metadata"]["annotations"][du.REVISION] == "3"
        assert back["metadata"]["annotations"][du.REVISION_HISTORY] == "1"
        assert (
            back["spec"]["replicas"] == 2
            and rss[second["metadata"]["name"]]["spec"]["replicas"] == 0
        )
        assert d["metadata"]["annotations"][du.REVISION] == "3"
        for pod in await live_pods(client):
            assert pod["spec"]["containers"][0]["image"] == "nginx:1.25"

        # `kubectl rollout restart`: a template annotation → a new ReplicaSet, revision 4.
        restart = {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}
                    }
                }
            }
        }
        await client.patch(DEPLOYMENT, "web", restart, "default")
        await wait_rolled_out(client)
        rss_after = await replica_sets(client)
        assert len(rss_after) == 3
        assert du.revision(rss_after[-1]) == 4


async def test_paused_deployment_does_not_roll_out(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    kubelet.auto_ready = True
    async with controllers(client, informers):
        await client.create(DEPLOYMENT, deployment(replicas=2))
        await wait_rolled_out(client)
        await client.patch(DEPLOYMENT, "web", {"spec": {"paused": True}}, "default")

        async def paused() -> Obj | None:
            d = await client.get(DEPLOYMENT, "web", "default")
            cond = condition(d, "Progressing")
            return cond if cond["reason"] == "DeploymentPaused" else None

        cond = await eventually(paused)
        assert (cond["status"], cond["message"]) == ("Unknown", "Deployment is paused")
        v2 = {
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}
        }
        await client.patch(DEPLOYMENT, "web", v2, "default")
        # Scaling still works while paused; the template change does not roll out.
        await client.patch(DEPLOYMENT, "web", {"spec": {"replicas": 3}}, "default")

        async def scaled() -> bool:
            d = await client.get(DEPLOYMENT, "web", "default")
            return (
                d["status"].get("observedGeneration") == d["metadata"]["generation"]
                and len(await live_pods(client)) == 3
            )

        await eventually(scaled)
        assert len(await replica_sets(client)) == 1

        await client.patch(DEPLOYMENT, "web", {"spec": {"paused": False}}, "default")
        await wait_rolled_out(client)
        assert len(await replica_sets(client)) == 2
        for pod in await live_pods(client):
            assert pod["spec"]["containers"][0]["image"] == "nginx:1.26"


async def test_recreate_stops_old_pods_before_starting_new_ones(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    kubelet.auto_ready = True
    async with controllers(client, informers):
        await client.create(DEPLOYMENT, deployment(replicas=3, strategy={"type": "Recreate"}))
        await wait_rolled_out(client)
        watch = RolloutWatch(client)
        await watch.start()
        v2 = {
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}
        }
        await client.patch(DEPLOYMENT, "web", v2, "default")
        await wait_rolled_out(client)
        await watch.stop()
        assert watch.max_pods == 3
        assert watch.min_ready == 0
        for pod in await live_pods(client):
            assert pod["spec"]["containers"][0]["image"] == "nginx:1.26"


async def test_old_replica_sets_beyond_the_history_limit_are_deleted(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    kubelet.auto_ready = True
    async with controllers(client, informers):
        await client.create(DEPLOYMENT, deployment(replicas=1, revisionHistoryLimit=1))
        await wait_rolled_out(client)
        for version in ("1.26", "1.27", "1.28"):
            change = {
                "spec": {
                    "template": {
                        "spec": {"containers": [{"name": "web", "image": f"nginx:{version}"}]}
                    }
                }
            }
            await client.patch(DEPLOYMENT, "web", change, "default")
            await wait_rolled_out(client)

        async def cleaned() -> list[int] | None:
            revisions = [du.revision(rs) for rs in await replica_sets(client)]
            return revisions if revisions == [3, 4] else None

        await eventually(cleaned)


async def test_progress_deadline_exceeded(client: Client, informers: SharedInformerFactory) -> None:
    async with controllers(client, informers):
        await client.create(DEPLOYMENT, deployment(replicas=2, progressDeadlineSeconds=1))

        async def timed_out() -> Obj | None:
            d = await client.get(DEPLOYMENT, "web", "default")
            conds = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or ()}
            progressing = conds.get("Progressing") or {}
            return d if progressing.get("reason") == "ProgressDeadlineExceeded" else None

        d = await eventually(timed_out)
        (rs,) = await replica_sets(client)
        cond = condition(d, "Progressing")
        assert cond["status"] == "False"
        assert (
            cond["message"] == f'ReplicaSet "{rs["metadata"]["name"]}" has timed out progressing.'
        )
        available = condition(d, "Available")
        assert (available["status"], available["reason"]) == ("False", "MinimumReplicasUnavailable")
        assert available["message"] == "Deployment does not have minimum availability."
        assert d["status"]["unavailableReplicas"] == 2


async def test_hash_collision_bumps_collision_count(
    client: Client, informers: SharedInformerFactory, kubelet: Kubelet
) -> None:
    kubelet.auto_ready = True
    d = await client.create(DEPLOYMENT, deployment(replicas=1, paused=True))
    taken = f"web-{du.compute_hash(d['spec']['template'])}"
    other = {"app": "other"}
    await client.create(
        REPLICA_SET,
        {
            "metadata": {"name": taken, "namespace": "default"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": other},
                "template": pod_template(other),
            },
        },
    )
    async with controllers(client, informers):
        await client.patch(DEPLOYMENT, "web", {"spec": {"paused": False}}, "default")
        d = await wait_rolled_out(client)
        assert d["status"]["collisionCount"] == 1
        names = {rs["metadata"]["name"] for rs in await replica_sets(client)}
        assert names == {taken, f"web-{du.compute_hash(d['spec']['template'], 1)}"}
