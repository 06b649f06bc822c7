"""The whole control plane on simulated nodes: a Deployment scaled 0 -> 10,000 -> 0 on 1,000 nodes.

Run: .venv/bin/python -m bench controlplane [-- --nodes N --replicas N --profile DIR]
(or `python -m bench.bench_controlplane ARGS`). Prints figures and their
targets; never asserts. Two to three minutes with the defaults.

The issue "control plane, proven on simulated nodes" sets the targets, on 2
cores with 1,000 simulated nodes: scheduling >= 1,000 pods/s end to end (pods
created -> bound); a Deployment scaled 0 -> 10,000 has every pod Running and
Ready as the API reports within 30 s; scaled back to 0, no pod is left within
30 s; server RSS with 10,000 pods <= 1.5 GiB.

Unlike `bench_scheduler` (the scheduler alone, in process, pods made up
front), everything here runs as users run it: one `nanokube server
--simulated-nodes N` subprocess with the sqlite store, whose ReplicaSet
controller creates the pods, whose scheduler binds them and whose simulated
kubelets start them and report them Ready, all on its one event loop. The
measuring client speaks HTTPS with the admin certificate and stays cheap so
that it does not slow what it measures: it watches the one Deployment and the
Nodes (a few events each), and polls with `limit=1` lists half a second
apart (each costs the server a sort of the namespace's keys; their count and
latency are printed):

- "all bound": the Deployment reports every replica created and a list of
  pods with `fieldSelector=spec.nodeName=` (unbound) is empty;
- "all Ready": the Deployment's `readyReplicas` reaches the count; then one
  full pod list confirms every pod Running, Ready and bound, and its
  `PodScheduled`/`Ready` condition times (whole seconds, wall clock) show
  when the last bind and the last Ready happened, as the server saw them;
- "none left": a `limit=1` list of the namespace's pods is empty.

Every wait is bounded (`--grace` times the target); a missed target prints
MISSED with the figure reached. The machine is shared, so each phase prints
the server's CPU seconds next to the whole machine's busy time: a server
using a full core is the limit, a server waiting while the machine is busy
is being starved. With `--profile DIR`, py-spy samples the server through
both scales and the top functions are printed (sampling with `--native`
pauses the server briefly 100 times a second: compare figures without it).

`common.Server` starts `nanokube server` without extra flags; `SimServer`
below adds the simulated nodes and the /8 cluster CIDR (10.42.0.0/16 has only
256 /24 podCIDRs, too few for 1,000 nodes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import common, pyspy
from bench.common import figure, note
from nanokube.api import meta

Obj = dict[str, Any]

NAMESPACE = "bench"
DEPLOYMENT = "web"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
POLL = 0.5  # seconds between `limit=1` polls: each costs the server O(pods), see `Polls`
GIB = 1024 * 1024  # kB


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_controlplane", description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=1000, help="simulated nodes")
    p.add_argument("--replicas", type=int, default=10_000, help="the Deployment's scale")
    p.add_argument("--target", type=float, default=30.0, help="seconds allowed per scale")
    p.add_argument("--grace", type=float, default=2.0, help="waits end at grace x target")
    p.add_argument("--register-timeout", type=float, default=120.0)
    p.add_argument("--profile", type=Path, help="py-spy both scales into this directory")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    print(
        f"=== control plane: {args.nodes:,} simulated nodes, Deployment 0 -> "
        f"{args.replicas:,} -> 0, sqlite store, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    if args.profile and pyspy.available() is None:
        print("    py-spy not installed: running without --profile")
        args.profile = None
    with tempfile.TemporaryDirectory(prefix="nanokube-bench-") as tmp:
        server = SimServer(Path(tmp) / "data", args.nodes)
        try:
            print("--- start and node registration")
            spawned = time.perf_counter()
            ready = server.start()
            figure("spawn -> /readyz 200", f"{ready:.2f} s")
            tls = common.client_tls(server.kubeconfig, Path(tmp) / "client")
            common.run(Bench(args, server, tls).run(spawned))
        finally:
            server.stop()


class SimServer(common.Server):
    """`common.Server` with simulated nodes and a cluster CIDR large enough for them."""

    def __init__(self, data_dir: Path, nodes: int) -> None:
        super().__init__(data_dir)
        self.nodes = nodes
        self.ready_poll = 0.01

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--simulated-nodes",
            str(self.nodes),
            "--cluster-cidr",
            "10.0.0.0/8",
        ]


class Watch:
    """A list then watch of one collection: the latest objects by name, and waits on them."""

    def __init__(self, session: aiohttp.ClientSession, path: str, query: str = "") -> None:
        self.session = session
        self.path = path
        self.query = query
        self.objects: dict[str, Obj] = {}
        self.events = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listed = await get_json(self.session, f"{self.path}?{self.query}")
        for obj in listed["items"]:
            self.objects[obj["metadata"]["name"]] = obj
        self._task = asyncio.create_task(self._follow(listed["metadata"]["resourceVersion"]))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def until(self, done: Callable[[], bool], deadline: float) -> bool:
        """Wait until `done()` holds after some event, or False at `deadline` (perf_counter)."""
        while not done():
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return done()
        return True

    async def _follow(self, rv: str) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        while True:
            url = f"{self.path}?watch=1&resourceVersion={rv}&{self.query}"
            async with self.session.get(url, timeout=timeout) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"watch {url}: {resp.status} {await resp.text()}")
                async for line in resp.content:
                    event = orjson.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch {url}: {obj}")
                    rv = obj["metadata"]["resourceVersion"]
                    if event["type"] == "DELETED":
                        self.objects.pop(obj["metadata"]["name"], None)
                    elif event["type"] != "BOOKMARK":
                        self.objects[obj["metadata"]["name"]] = obj
                    self.events += 1
                    self._changed.set()


class Polls:
    """The `limit=1` list polls of one phase, and how long each took to answer.

    A `limit=1` list is not O(1) here: the server sorts the namespace's keys
    from its watch cache for every list (`PrefixCache.items`), so polls are
    spaced `POLL` apart and their cost is printed beside the figures.
    """

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.times: list[float] = []

    async def empty(self, url: str) -> bool:
        t = time.perf_counter()
        items = (await get_json(self.session, url))["items"]
        self.times.append(time.perf_counter() - t)
        return not items

    def note(self) -> None:
        if self.times:
            note(
                f"{len(self.times)} limit=1 list polls, {POLL} s apart, answered in a median "
                f"{common.median(self.times) * 1000:.0f} ms (with the wait for the busy loop)"
            )


async def get_json(session: aiohttp.ClientSession, url: str) -> Obj:
    async with session.get(url) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {url}: {resp.status} {body[:300]!r}")
    result: Obj = orjson.loads(body)
    return result


async def send(session: aiohttp.ClientSession, method: str, url: str, body: Obj, ctype: str) -> Obj:
    data = orjson.dumps(body)
    async with session.request(method, url, data=data, headers={"Content-Type": ctype}) as resp:
        raw = await resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {url}: {resp.status} {raw[:300]!r}")
    result: Obj = orjson.loads(raw)
    return result


def condition(obj: Obj, kind: str) -> Obj:
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return {}


def schedulable(node: Obj) -> bool:
    """Ready, with a podCIDR and its network up: the scheduler will place pods on it."""
    return (
        condition(node, "Ready").get("status") == "True"
        and bool(node.get("spec", {}).get("podCIDR"))
        and condition(node, "NetworkUnavailable").get("status") != "True"
    )


def deployment() -> Obj:
    labels = {"app": DEPLOYMENT}
    container = {
        "name": "app",
        "image": "registry.k8s.io/pause:3.10",
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


class Usage:
    """Server CPU, machine busy time and wall time since construction, as one note."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.wall = time.perf_counter()
        self.cpu = common.cpu_seconds(pid)
        self.busy = common.machine_busy_seconds()

    def note(self, what: str) -> None:
        wall = time.perf_counter() - self.wall
        cpu = common.cpu_seconds(self.pid) - self.cpu
        busy = common.machine_busy_seconds() - self.busy
        note(
            f"{what}: server CPU {cpu:.1f} s in {wall:.1f} s ({cpu / wall:.0%} of a core); "
            f"whole machine busy {busy / wall:.2f} of {os.cpu_count()} cores"
        )


class Bench:
    def __init__(self, args: argparse.Namespace, server: common.Server, tls: Obj) -> None:
        self.args = args
        self.server = server
        self.tls = tls
        self.n = args.replicas

    async def run(self, spawned: float) -> None:
        connector = aiohttp.TCPConnector(limit=8, ssl=common.ssl_context(self.tls))
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(
            self.tls["server"], connector=connector, timeout=timeout
        ) as s:
            if not await self.nodes(s, spawned):
                return
            await send(s, "POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}}, JSON)
            await send(s, "POST", DEPLOYMENTS, deployment(), JSON)
            deploy = Watch(s, DEPLOYMENTS, f"fieldSelector=metadata.name%3D{DEPLOYMENT}")
            await deploy.start()
            try:
                await self.scale_up(s, deploy)
                await self.scale_down(s, deploy)
                figure(
                    "server CPU seconds since spawn", f"{common.cpu_seconds(self.server.pid):.1f} s"
                )
            finally:
                await deploy.stop()

    # -- nodes -----------------------------------------------------------------

    async def nodes(self, s: aiohttp.ClientSession, spawned: float) -> bool:
        usage = Usage(self.server.pid)
        nodes = Watch(s, "/api/v1/nodes")
        await nodes.start()
        want = self.args.nodes
        deadline = spawned + self.args.register_timeout
        milestones = {
            "registered": lambda: len(nodes.objects) >= want,
            "Ready": lambda: (
                sum(condition(n, "Ready").get("status") == "True" for n in nodes.objects.values())
                >= want
            ),
            "schedulable": lambda: sum(map(schedulable, nodes.objects.values())) >= want,
        }
        ok = True
        for what, done in milestones.items():
            if await nodes.until(done, deadline):
                figure(f"spawn -> {want:,} nodes {what}", f"{time.perf_counter() - spawned:.1f} s")
            else:
                ok = False
                reached = sum(map(schedulable, nodes.objects.values()))
                figure(
                    f"spawn -> {want:,} nodes {what}",
                    f"{reached:,} schedulable",
                    f"<= {self.args.register_timeout:.0f} s",
                    False,
                )
                break
        await nodes.stop()
        usage.note("registration")
        figure(f"RSS with {want:,} nodes", rss_text(self.server.pid))
        return ok

    # -- scale 0 -> N ----------------------------------------------------------

    async def scale(self, s: aiohttp.ClientSession, replicas: int) -> tuple[float, float]:
        """Set the Deployment's scale; the perf_counter and wall clock just before the request."""
        t0, wall0 = time.perf_counter(), time.time()
        await send(
            s,
            "PATCH",
            f"{DEPLOYMENTS}/{DEPLOYMENT}/scale",
            {"spec": {"replicas": replicas}},
            MERGE,
        )
        return t0, wall0

    async def scale_up(self, s: aiohttp.ClientSession, deploy: Watch) -> None:
        n, target = self.n, self.args.target
        print(f"--- scale 0 -> {n:,}")
        usage = Usage(self.server.pid)
        recording = self.record("scale-up")
        t0, wall0 = await self.scale(s, n)
        deadline = t0 + target * self.args.grace
        status = lambda: deploy.objects.get(DEPLOYMENT, {}).get("status", {})  # noqa: E731
        created_at: list[float] = []
        polls = Polls(s)

        async def created_then_bound() -> float | None:
            if not await deploy.until(lambda: status().get("replicas", 0) >= n, deadline):
                return None
            created_at.append(time.perf_counter() - t0)
            while time.perf_counter() < deadline:
                if await polls.empty(f"{PODS}?fieldSelector=spec.nodeName%3D&limit=1"):
                    return time.perf_counter() - t0
                await asyncio.sleep(POLL)
            return None

        async def ready() -> float | None:
            if await deploy.until(lambda: status().get("readyReplicas", 0) >= n, deadline):
                return time.perf_counter() - t0
            return None

        bound, ready_in = await asyncio.gather(created_then_bound(), ready())
        usage.note(f"0 -> {n:,}")
        self.report(recording)
        polls.note()
        mem = common.memory_status(self.server.pid)
        listed_at = time.perf_counter()
        pods = (await get_json(s, PODS))["items"]
        listed_at = time.perf_counter() - listed_at
        counts = pod_counts(pods)
        waited = f"by {deadline - t0:.0f} s"
        if created_at:
            figure(f"all {n:,} pods created (Deployment status)", f"{created_at[0]:.1f} s")
        else:
            figure(f"all {n:,} pods created (Deployment status)", f"{len(pods):,} {waited}")
        if bound is not None:
            figure(f"all {n:,} pods bound", f"{bound:.1f} s")
            rate = n / bound
        else:
            figure(f"all {n:,} pods bound", f"{counts['bound']:,} {waited}")
            rate = counts["bound"] / (deadline - t0)
        figure("pods/s, scale request -> all bound", f"{rate:,.0f}", ">= 1,000", rate >= 1000)
        if created_at and bound is not None:
            note(
                f"the ReplicaSet created {n / created_at[0]:,.0f} pods/s and the last bind came "
                f"{bound - created_at[0]:.1f} s after the last create (polls {POLL} s apart): "
                "a lag near zero means creation, not scheduling, set the rate"
            )
        reached = (
            f"{ready_in:.1f} s"
            if ready_in is not None
            else f"{status().get('readyReplicas', 0):,} {waited}"
        )
        ok = ready_in is not None and ready_in <= target
        figure(f"readyReplicas = {n:,}", reached, f"<= {target:.0f} s", ok)
        figure(
            "pod list: Running, Ready, bound",
            f"{counts['running']:,}, {counts['ready']:,}, {counts['bound']:,} of {len(pods):,}",
            f"{n:,} each",
            counts["ready"] == counts["running"] == counts["bound"] == len(pods) == n,
        )
        used = len({p["spec"].get("nodeName") for p in pods} - {None})
        note(
            f"the list took {listed_at:.1f} s; from the pods' conditions (server wall clock, whole "
            f"seconds) the last bind was {counts['last_scheduled'] - wall0:+.0f} s and the last "
            f"Ready {counts['last_ready'] - wall0:+.0f} s after the scale request; {used:,} nodes used"
        )
        del pods
        for key in ("VmRSS", "VmHWM"):
            figure(
                f"server {key} with {n:,} pods" + (" (peak so far)" if key == "VmHWM" else ""),
                f"{mem[key] / 1024:,.0f} MB",
                "<= 1.5 GiB",
                mem[key] <= 1.5 * GIB,
            )
        note(f"after the full pod list: {rss_text(self.server.pid)}")

    # -- scale N -> 0 ----------------------------------------------------------

    async def scale_down(self, s: aiohttp.ClientSession, deploy: Watch) -> None:
        n, target = self.n, self.args.target
        print(f"--- scale {n:,} -> 0")
        usage = Usage(self.server.pid)
        recording = self.record("scale-down")
        t0, _ = await self.scale(s, 0)
        deadline = t0 + target * self.args.grace
        status = lambda: deploy.objects.get(DEPLOYMENT, {}).get("status", {})  # noqa: E731
        polls = Polls(s)

        async def none_left() -> float | None:
            while time.perf_counter() < deadline:
                if await polls.empty(f"{PODS}?limit=1"):
                    return time.perf_counter() - t0
                await asyncio.sleep(POLL)
            return None

        async def status_zero() -> float | None:
            if await deploy.until(lambda: status().get("replicas", 0) == 0, deadline):
                return time.perf_counter() - t0
            return None

        gone, zero = await asyncio.gather(none_left(), status_zero())
        usage.note(f"{n:,} -> 0")
        self.report(recording)
        polls.note()
        if zero is not None:
            figure("Deployment status replicas = 0", f"{zero:.1f} s")
        if gone is not None:
            figure("no pod left", f"{gone:.1f} s", f"<= {target:.0f} s", gone <= target)
        else:
            left = len((await get_json(s, PODS))["items"])
            figure(
                "no pod left",
                f"{left:,} left at {deadline - t0:.0f} s",
                f"<= {target:.0f} s",
                False,
            )
        figure("server VmRSS after scale to 0", rss_text(self.server.pid))
        events = (await get_json(s, f"/api/v1/namespaces/{NAMESPACE}/events"))["items"]
        reasons: dict[str, int] = {}
        for event in events:
            reasons[event.get("reason", "")] = reasons.get(event.get("reason", ""), 0) + 1
        top = ", ".join(f"{r} {c:,}" for r, c in sorted(reasons.items(), key=lambda rc: -rc[1])[:6])
        note(f"Events stored in {NAMESPACE} after both scales: {len(events):,} ({top})")
        warnings = {e.get("message", "") for e in events if e.get("type") == "Warning"}
        for message in sorted(warnings)[:3]:
            note(f"Warning event: {message[:200]}")

    # -- profile ---------------------------------------------------------------

    def record(self, phase: str) -> pyspy.Recording | None:
        """py-spy the server through one phase, with `--profile`."""
        if self.args.profile is None:
            return None
        self.args.profile.mkdir(parents=True, exist_ok=True)
        return pyspy.Recording(self.server.pid, self.args.profile / f"controlplane-{phase}.txt")

    @staticmethod
    def report(recording: pyspy.Recording | None) -> None:
        if recording is None:
            return
        recording.stop()
        note(f"py-spy ({recording.output}):")
        print(pyspy.summarize(recording.output, top=20))
        print(components(recording.output))


JSON = "application/json"
MERGE = "application/merge-patch+json"


def pod_counts(pods: list[Obj]) -> dict[str, Any]:
    """How many pods are bound, Running and Ready, and when the last was scheduled / Ready."""
    counts: dict[str, Any] = {"bound": 0, "running": 0, "ready": 0}
    last_scheduled = last_ready = 0.0
    for pod in pods:
        counts["bound"] += bool(pod["spec"].get("nodeName"))
        counts["running"] += pod.get("status", {}).get("phase") == "Running"
        ready = condition(pod, "Ready")
        if ready.get("status") == "True":
            counts["ready"] += 1
            last_ready = max(last_ready, meta.parse_time(ready.get("lastTransitionTime", "")))
        scheduled = condition(pod, "PodScheduled")
        if scheduled.get("status") == "True":
            last_scheduled = max(
                last_scheduled, meta.parse_time(scheduled.get("lastTransitionTime", ""))
            )
    counts["last_scheduled"], counts["last_ready"] = last_scheduled, last_ready
    return counts


# Where a stack belongs, by a frame it contains: the first match wins, in this order.
COMPONENTS = (
    ("cyclic garbage collector", "gc_collect"),
    ("scheduler", "nanokube/scheduler/"),
    ("event recorder", "nanokube/client/events.py"),
    ("simulated kubelets", "nanokube/kubelet/"),
    ("ReplicaSet controller", "nanokube/controllers/replicaset.py"),
    ("Deployment controller", "nanokube/controllers/deployment"),
    ("garbage collector controller", "nanokube/controllers/garbagecollector.py"),
    ("other controllers", "nanokube/controllers/"),
    ("informers (event dispatch, indexers)", "nanokube/client/informer.py"),
    ("HTTP (aiohttp: this benchmark's requests)", "aiohttp/"),
)


def components(path: Path) -> str:
    """Busy samples by component (the task a stack runs in), as printable lines.

    Complements `pyspy.summarize`, which ranks functions: this says which part
    of the control plane the server's one core went to.
    """
    shares: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit() or frames[-1].strip().startswith(("epoll_wait", "epoll_pwait")):
            continue
        total += int(count)
        label = next((c for c, frame in COMPONENTS if frame in stack), "other (loop, storage...)")
        shares[label] = shares.get(label, 0) + int(count)
    lines = ["    by component:"]
    for label, n in sorted(shares.items(), key=lambda kv: -kv[1]):
        lines.append(f"      {n / max(total, 1):6.1%}  {label}")
    return "\n".join(lines)


def rss_text(pid: int) -> str:
    mem = common.memory_status(pid)
    return f"{mem['VmRSS'] / 1024:,.0f} MB (peak {mem['VmHWM'] / 1024:,.0f} MB)"


if __name__ == "__main__":
    main()
