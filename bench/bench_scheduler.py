"""Scheduler throughput: pods bound per second on 1,000 nodes, in-process API server.

Run: .venv/bin/python bench/bench_scheduler.py [--nodes 1000] [--pods 5000] [--store memory|sqlite]

Like upstream's scheduler_perf "SchedulingBasic": the nodes and the pending
pods (ReplicaSet-owned, small requests) are created first, then the scheduler
starts and the clock runs from its start until every pod is bound, so the
figure covers informer start-up, the cycles, the bindings written to the store
and the informers' processing of their events, all on one event loop as in
`nanokube server`. A second figure times the scheduling cycle alone (filter,
score, select over the cache) to show the algorithm's share. Target: >= 1,000
pods/s with 1,000 nodes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
from pathlib import Path

import uvloop

from nanokube.api.options import WriteOptions
from nanokube.apiserver import binding, patching
from nanokube.apiserver.rest import ResourceStore
from nanokube.apiserver.watchcache import WatchCache
from nanokube.client import kinds
from nanokube.client.inprocess import InProcessClient
from nanokube.scheduler import Scheduler
from nanokube.scheduler.cache import Cache
from nanokube.scheduler.framework import Algorithm
from nanokube.scheduler.nodeinfo import PodInfo
from nanokube.storage.memory import MemoryStore
from nanokube.storage.sqlite import SqliteStore
from nanokube.storage.store import Store

POD = kinds.by_kind("v1", "Pod")
NODE = kinds.by_kind("v1", "Node")
NAMESPACE = kinds.by_kind("v1", "Namespace")
assert POD is not None and NODE is not None and NAMESPACE is not None


def node(i: int) -> dict:
    alloc = {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "500Gi"}
    return {
        "metadata": {
            "name": f"node-{i:04d}",
            "labels": {
                "kubernetes.io/hostname": f"node-{i:04d}",
                "topology.kubernetes.io/zone": f"zone-{i % 3}",
            },
        },
        "status": {
            "capacity": alloc,
            "allocatable": alloc,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(i: int, owners: int) -> dict:
    owner = f"rs-{i % owners}"
    return {
        "metadata": {
            "name": f"pod-{i:06d}",
            "namespace": "default",
            "labels": {"app": owner},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": owner,
                    "uid": f"uid-{owner}",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "busybox",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
            ]
        },
    }


async def end_to_end(store: Store, nodes: int, pods: int, owners: int) -> None:
    assert POD is not None and NODE is not None and NAMESPACE is not None
    cache = WatchCache(store)
    await cache.start()
    resources = ResourceStore(store, cache)
    client = InProcessClient(resources, patching.patch, {("pods", "binding"): binding.bind})
    await resources.create(NAMESPACE, "", {"metadata": {"name": "default"}}, WriteOptions(), [])
    t0 = time.perf_counter()
    for i in range(nodes):
        await client.create(NODE, node(i))
    for i in range(pods):
        await client.create(POD, pod(i, owners))
    print(f"setup: {nodes} nodes, {pods} pods created in {time.perf_counter() - t0:.1f} s")

    scheduler = Scheduler(client, seed=1)
    t0 = time.perf_counter()
    c0 = time.process_time()
    task = asyncio.create_task(scheduler.run())
    while scheduler.scheduled < pods:
        await asyncio.sleep(0.05)
        if time.perf_counter() - t0 > 600:
            break
    took = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print(
        f"end to end: {scheduler.scheduled} pods bound in {took:.2f} s = "
        f"{scheduler.scheduled / took:,.0f} pods/s (target >= 1,000); "
        f"CPU {cpu:.2f} s = {scheduler.scheduled / cpu:,.0f} pods per CPU-second"
    )
    per_node = [len(ni.pods) for ni in scheduler.cache.nodes.values()]
    print(f"  spread: pods per node min {min(per_node)}, max {max(per_node)}")
    await scheduler.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await cache.stop()


def cycles_only(nodes: int, pods: int, owners: int) -> None:
    cache = Cache()
    for i in range(nodes):
        cache.add_node(node(i))
    algorithm = Algorithm(cache, seed=1)
    infos = []
    for i in range(pods):
        p = pod(i, owners)
        p["metadata"]["uid"] = f"u{i}"
        infos.append(PodInfo(p))
    t0 = time.perf_counter()
    c0 = time.process_time()
    for pi in infos:
        cache.assume(pi, algorithm.schedule(pi))
    took = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print(
        f"cycles only: {pods} pods in {took:.2f} s = {pods / took:,.0f} pods/s; "
        f"CPU {cpu / pods * 1e6:.0f} us per cycle = {pods / cpu:,.0f} pods per CPU-second"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--owners", type=int, default=50, help="ReplicaSets the pods belong to")
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    cycles_only(args.nodes, args.pods, args.owners)
    with tempfile.TemporaryDirectory() as tmp:
        store: Store = (
            MemoryStore() if args.store == "memory" else SqliteStore(str(Path(tmp) / "db.sqlite"))
        )
        uvloop.run(end_to_end(store, args.nodes, args.pods, args.owners))


if __name__ == "__main__":
    main()
