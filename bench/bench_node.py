"""Node agent figures: pods created → Running through a real `nanokube server` with its agent.

Run (root; runc, containernetworking-plugins, busybox-static; podman for the comparison):
    .venv/bin/python -m bench node [-- --pods 50 --burst 100 --podman-runs 15 --profile DIR]

`bench_kubelet` times the kubelet core alone (in-process API server, no scheduler);
this one times what a user sees: a `nanokube server` subprocess running its API
server, scheduler, controllers and node agent in one process (sqlite, HTTPS), with
a busybox image (`nanokube.runtime.images.busybox`) dropped in
`DATA_DIR/agent/images/` before it starts, so the image is cached. Pods have one
container (`/bin/sleep`, `imagePullPolicy: IfNotPresent`) and no `nodeName`: the
scheduler binds them. Every time is from the create call until a watch on the pods
(the API's view, as `kubectl wait` sees it) shows `status.phase: Running`.

1. sequential: `--pods` pods created one at a time, each waited for (they stay
   running), after one warm-up pod; p50/p99, and where the time goes: created →
   bound by the scheduler → Running, from the watch events' arrival times
2. burst: `--burst` pods created at once (queued together, `CONNECTIONS` requests in
   flight); the time from the first create until all are Running, when the creates
   were acknowledged and the pods bound, and who used the CPU meanwhile
3. memory: the server's RSS with no pods and with the burst's pods running (the
   agent runs in the server, so the difference is what pods cost it; a server
   started with `--disable-agent` gives the agent's own share), and the per-container
   shim processes' RSS and PSS, which live outside the server
4. podman: `podman kube play` of the same one-container pod, the image made by
   `podman import` of the same busybox layer, `--runtime runc` and the ulimits
   MACHINE-NOTES gives (through a private CONTAINERS_CONF: `kube play` has no
   `--ulimit`); timed until it returns with the pod running; the ratio
   nanokube / podman of the medians

The machine is shared: the CPU other processes use while the server idles is printed
first, and a loaded machine stretches every time here (podman's too, hence the ratio).

Targets (node-agent issue, this 2-core machine): create → Running p50 ≤ 200 ms and
p99 ≤ 500 ms; a burst of 100 all Running within 10 s; agent RSS ≤ 60 MB + 1 MB per
running pod. Prints figures, never asserts; about two minutes.

The machine has one node agent at a time: before starting, the benchmark waits
(`--wait`) while another agent runs (a `nanokube server` without `--disable-agent`,
a `nanokube agent`, or a listener on port 10250), and kills none. Its own agent
still sits beside any other (own bridge, kubelet port, pod CIDR, state and log dirs,
cgroup root), so `--beside` runs it anyway (say, next to an idle agent that
competes for no CPU), naming the other agents. At the end every pod is deleted through the API, the containers
are checked gone (force-removed and reported if not) and the mounts, cgroups and
bridge it made are removed; podman's pod and image too. The server, the machine
checks and the cleanup are in `bench/nodehost.py`, podman in `bench/podman.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common, nodehost, podman, pyspy
from bench.common import figure, note
from bench.nodehost import NodeServer, cpu_with_children
from nanokube.api import errors
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_node import NODE
from nanokube.client.http import HTTPClient
from nanokube.runtime.images import busybox

IMAGE = "busybox:latest"
NAMESPACE = "default"
COMMAND = podman.COMMAND  # the same pod on both sides
DRAIN_TIMEOUT = 90.0
CONNECTIONS = 10
"""Requests in flight at once in a burst: a hundred new TLS connections to a server busy
starting pods took over aiohttp's 10 s connect timeout here (client-go's default QPS
would send the burst slower still)."""

Obj = dict[str, Any]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_node", description=__doc__.split("\n")[0])
    p.add_argument("--pods", type=int, default=50, help="pods created one at a time")
    p.add_argument("--burst", type=int, default=100, help="pods created at once")
    p.add_argument("--podman-runs", type=int, default=15, help="0 skips podman")
    p.add_argument("--wait", type=float, default=300.0, help="seconds to wait for another agent")
    p.add_argument(
        "--beside",
        action="store_true",
        help="run beside another agent (this one's port, bridge, CIDR and dirs are its own)",
    )
    p.add_argument("--profile", type=Path, help="py-spy the server into this directory")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if os.geteuid() != 0:
        print("    the node agent runs containers: run as root")
        return
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        if pyspy.available() is None:
            print("    py-spy not installed: running without --profile")
            args.profile = None
    if args.beside:
        for agent in nodehost.other_agents():
            print(f"    running beside another node agent: {agent}")
    else:
        nodehost.wait_for_machine(args.wait)
    print(
        f"=== node: server + agent (sqlite, HTTPS), {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    with tempfile.TemporaryDirectory(prefix="nanokube-bench-node-") as tmp:
        root = Path(tmp)
        results = Results()
        server = NodeServer(root)
        try:
            common_rss = nodehost.agentless_rss(root / "agentless")
            common.run(NodeBench(args, server, results, common_rss).run())
        finally:
            nodehost.teardown(server, root)
        if args.podman_runs > 0:
            podman_side_by_side(root / "podman", args.podman_runs, results)


class Results:
    """Figures one phase hands to a later one (the podman ratio needs nanokube's p50)."""

    p50: float | None = None


# --- nanokube -----------------------------------------------------------------------------


def pod_body(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "bench-node"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "c",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": COMMAND,
                }
            ],
        },
    }


class Tracker:
    """One watch on the namespace's pods; when each pod was first seen bound and Running."""

    def __init__(self, client: HTTPClient) -> None:
        self.client = client
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.gone: set[str] = set()
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listed = await self.client.list(POD, NAMESPACE)
        rv = listed["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._watch(rv))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def running_soon(self, name: str) -> asyncio.Future[float]:
        """A future set to the time `name` is first seen Running."""
        fut = asyncio.get_running_loop().create_future()
        if name in self.running:
            fut.set_result(self.running[name])
        else:
            self._waiters[name] = fut
        return fut

    async def _watch(self, rv: str) -> None:
        while True:  # a watch the server ends is resumed where it stopped
            async for etype, obj in self.client.watch(POD, NAMESPACE, resource_version=rv):
                now = time.perf_counter()
                meta = obj.get("metadata") or {}
                rv = meta.get("resourceVersion", rv)
                if etype == "BOOKMARK":
                    continue
                name = meta.get("name", "")
                if etype == "DELETED":
                    self.gone.add(name)
                    continue
                if (obj.get("spec") or {}).get("nodeName"):
                    self.bound.setdefault(name, now)
                phase = (obj.get("status") or {}).get("phase")
                if phase == "Running" and name not in self.running:
                    self.running[name] = now
                    fut = self._waiters.pop(name, None)
                    if fut is not None and not fut.done():
                        fut.set_result(now)


class NodeBench:
    def __init__(
        self, args: argparse.Namespace, server: NodeServer, results: Results, agentless: float
    ) -> None:
        self.args = args
        self.server = server
        self.results = results
        self.agentless_rss = agentless
        self.client: HTTPClient
        self.tracker: Tracker
        self._created_at = 0.0  # when the last create_and_wait sent its create
        self._recording: pyspy.Recording | None = None  # stopped even if a phase fails

    async def run(self) -> None:
        busybox.write_busybox_archive(self.server.data_dir / "agent" / "images" / "busybox.tar")
        ready = self.server.start()
        figure("server start (spawn -> /readyz)", f"{ready * 1000:.0f} ms")
        self.client = HTTPClient.from_kubeconfig(self.server.kubeconfig)
        try:
            t0 = time.perf_counter()
            await self.wait_node_ready()
            figure("node Ready after /readyz", f"{(time.perf_counter() - t0) * 1000:.0f} ms")
            self.tracker = Tracker(self.client)
            await self.tracker.start()
            try:
                await self.phases()
            finally:
                if self._recording is not None:
                    self._recording.stop()
                await self.drain()
                await self.tracker.stop()
        finally:
            await self.client.close()

    async def phases(self) -> None:
        await asyncio.sleep(1.0)
        others = await asyncio.to_thread(nodehost.others_busy, self.server.pid)
        figure("other processes' CPU before the run", f"{others:.2f} cores")
        rss_idle = self.server.rss_mb()
        warm = await self.create_and_wait("warmup")
        figure("warm-up pod create -> Running", f"{warm * 1000:.0f} ms")
        rss_seq = await self.sequential()
        await self.delete_all("sequential")
        await asyncio.sleep(1.0)
        rss_before = self.server.rss_mb()
        await self.burst()
        await asyncio.sleep(1.0)
        self.memory(rss_idle, rss_seq, rss_before, self.server.rss_mb(), self.args.burst)
        await self.delete_all("burst")
        figure("server RSS after all deleted", f"{self.server.rss_mb():.0f} MB")

    async def sequential(self) -> float:
        """Pods one at a time, each waited for; the server's RSS with them all running."""
        print(f"--- {self.args.pods} pods, created one at a time (each waited for)")
        recording = self.profile_start("sequential")
        cpu0 = cpu_with_children(self.server.pid)
        times, bind_times = [], []
        for i in range(self.args.pods):
            name = f"seq-{i}"
            times.append(await self.create_and_wait(name))
            bind_times.append(self.tracker.bound[name] - self._created_at)
        cpu1 = cpu_with_children(self.server.pid)
        self.profile_stop(recording)
        times.sort()
        p50, p99 = common.quantile(times, 0.5), common.quantile(times, 0.99)
        self.results.p50 = p50
        figure("create -> Running p50", f"{p50 * 1000:.0f} ms", "<= 200 ms", p50 <= 0.2)
        figure("create -> Running p99", f"{p99 * 1000:.0f} ms", "<= 500 ms", p99 <= 0.5)
        figure("  min / max", f"{times[0] * 1000:.0f} / {times[-1] * 1000:.0f} ms")
        bind_p50 = common.median(bind_times)
        figure("  of which create -> bound (scheduler) p50", f"{bind_p50 * 1000:.0f} ms")
        own, children = ((b - a) / len(times) * 1000 for a, b in zip(cpu0, cpu1, strict=True))
        figure("  CPU per pod: server / its children", f"{own:.0f} / {children:.0f} ms")
        return self.server.rss_mb()

    async def burst(self) -> None:
        """All pods created at once; when they were acknowledged, bound and Running, and
        who used the CPU meanwhile."""
        print(f"--- {self.args.burst} pods created at once")
        names = [f"burst-{i}" for i in range(self.args.burst)]
        futures = [self.tracker.running_soon(n) for n in names]
        recording = self.profile_start("burst")
        server0, busy0 = cpu_with_children(self.server.pid), common.machine_busy_seconds()
        bench0 = sum(cpu_with_children(os.getpid()))
        acked: dict[str, float] = {}
        in_flight = asyncio.Semaphore(CONNECTIONS)

        async def create(name: str) -> None:
            async with in_flight:
                await self.client.create(POD, pod_body(name))
            acked[name] = time.perf_counter()

        t0 = time.perf_counter()
        await asyncio.gather(*(create(n) for n in names))
        await asyncio.wait_for(asyncio.gather(*futures), 120)
        total = time.perf_counter() - t0
        server1, busy = cpu_with_children(self.server.pid), common.machine_busy_seconds() - busy0
        self.profile_stop(recording)
        shims = sum(sum(cpu_with_children(p)) for p in self.server.shims())
        bench = sum(cpu_with_children(os.getpid())) - bench0
        figure(f"all {self.args.burst} Running after", f"{total:.2f} s", "<= 10 s", total <= 10)
        for label, times in (
            ("create acknowledged", [acked[n] - t0 for n in names]),
            ("bound", [self.tracker.bound[n] - t0 for n in names]),
            ("Running", [self.tracker.running[n] - t0 for n in names]),
        ):
            times.sort()
            p50, last = common.quantile(times, 0.5), times[-1]
            figure(f"  {label}: p50 / last", f"{p50:.2f} / {last:.2f} s")
        own, children = server1[0] - server0[0], server1[1] - server0[1]
        print(f"    CPU used meanwhile ({busy:.1f} s of {2 * total:.1f} on 2 cores):")
        figure("  server process", f"{own:.1f} s")
        figure("  its waited-for children (CNI, runc ...)", f"{children:.1f} s")
        figure("  container shims (+ their runc create)", f"{shims:.1f} s")
        figure("  this benchmark (client, watch, py-spy)", f"{bench:.1f} s")
        figure("  the rest of the machine", f"{busy - own - children - shims - bench:.1f} s")

    def memory(self, idle: float, seq: float, before: float, loaded: float, pods: int) -> None:
        print("--- memory (the agent runs in the server process)")
        figure("server RSS, no pods (after start)", f"{idle:.0f} MB", "<= 60 MB", idle <= 60)
        figure("  a --disable-agent server, idle", f"{self.agentless_rss:.0f} MB")
        figure("  so the agent's own share", f"{idle - self.agentless_rss:.0f} MB")
        figure(f"server RSS, {self.args.pods} pods running", f"{seq:.0f} MB")
        figure("server RSS, 0 pods before the burst", f"{before:.0f} MB")
        limit = 60 + pods
        figure(
            f"server RSS, {pods} pods running",
            f"{loaded:.0f} MB",
            f"<= {limit} MB",
            loaded <= limit,
        )
        per_pod = (loaded - before) / pods
        figure(
            "  per running pod (vs 0 before)", f"{per_pod * 1024:.0f} kB", "<= 1 MB", per_pod <= 1
        )
        shims = self.server.shims()
        rss = sum(common.rss_mb(p) for p in shims)
        pss = sum(nodehost.pss_mb(p) for p in shims)
        figure(f"{len(shims)} container shims: RSS / PSS", f"{rss:.0f} / {pss:.0f} MB")
        if shims:
            figure("  per shim RSS / PSS", f"{rss / len(shims):.1f} / {pss / len(shims):.1f} MB")

    async def wait_node_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(errors.NotFound):
                node = await self.client.get(NODE, nodehost.NODE_NAME)
                conditions = (node.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError(
            f"node {nodehost.NODE_NAME} not Ready after {timeout}s:\n{self.server.log_tail()}"
        )

    async def create_and_wait(self, name: str) -> float:
        """Create pod `name`; seconds until the watch sees it Running."""
        running = self.tracker.running_soon(name)
        self._created_at = t0 = time.perf_counter()
        await self.client.create(POD, pod_body(name))
        return await asyncio.wait_for(running, 60) - t0

    async def delete_all(self, phase: str) -> None:
        """Delete the namespace's pods; time until they are gone and no container runs."""
        t0 = time.perf_counter()
        pods = (await self.client.list(POD, NAMESPACE))["items"]
        names = [p["metadata"]["name"] for p in pods]
        in_flight = asyncio.Semaphore(CONNECTIONS)

        async def delete(name: str) -> None:
            async with in_flight:
                await self.client.delete(POD, name, NAMESPACE)

        await asyncio.gather(*(delete(n) for n in names))
        while time.perf_counter() < t0 + DRAIN_TIMEOUT:
            left = (await self.client.list(POD, NAMESPACE))["items"]
            if not left and not self.server.runc_containers():
                figure(
                    f"{len(names)} pods deleted -> gone ({phase})",
                    f"{time.perf_counter() - t0:.2f} s",
                )
                return
            await asyncio.sleep(0.1)
        note(f"pods or containers still there {DRAIN_TIMEOUT:.0f} s after the delete")

    async def drain(self) -> None:
        with contextlib.suppress(Exception):
            if (await self.client.list(POD, NAMESPACE))["items"]:
                await self.delete_all("teardown")

    def profile_start(self, name: str) -> pyspy.Recording | None:
        if self.args.profile is None:
            return None
        output = self.args.profile / f"node-{name}.txt"
        self._recording = pyspy.Recording(self.server.pid, output)
        return self._recording

    def profile_stop(self, recording: pyspy.Recording | None) -> None:
        if recording is not None:
            recording.stop()
            self._recording = None
            if recording.output.exists():
                print(f"    py-spy of the server ({recording.output}):")
                print(pyspy.summarize(recording.output, top=20))


# --- podman -------------------------------------------------------------------------------


def podman_side_by_side(workdir: Path, runs: int, results: Results) -> None:
    print(f"--- podman kube play of the same pod, {runs} runs")
    if shutil.which("podman") is None:
        note("podman not installed (apt-get install -y podman): no comparison")
        return
    pm = podman.Podman(workdir)
    if re.search(rf"\b{podman.PODMAN_POD}\b", pm.run("pod", "ps", "--format", "{{.Name}}").stdout):
        note(f"a podman pod {podman.PODMAN_POD} exists already: not touching it")
        return
    try:
        pm.import_image()
        pm.play()  # warm-up: the first play builds podman's pause image
        times = sorted(pm.play() for _ in range(runs))
    finally:
        pm.cleanup()
    p50 = common.quantile(times, 0.5)
    figure("podman kube play -> running p50", f"{p50 * 1000:.0f} ms")
    figure("  min / max", f"{times[0] * 1000:.0f} / {times[-1] * 1000:.0f} ms")
    if results.p50 is not None:
        ratio = results.p50 / p50
        figure("nanokube / podman (p50)", f"{ratio:.2f}", "<= 1", ratio <= 1)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:
        sys.exit(130)
