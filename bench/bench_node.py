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
bridge it made are removed; podman's pod and image too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common, pyspy
from bench.common import figure, note
from nanokube.api import errors
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_node import NODE
from nanokube.client.http import HTTPClient
from nanokube.runtime.images import busybox

NODE_NAME = "nanokube-bench-node"
BRIDGE = "nkbn0"
CLUSTER_CIDR = "10.194.0.0/16"  # e2e uses 10.195, the unit tests 10.196-199
IMAGE = "busybox:latest"
NAMESPACE = "default"
COMMAND = ["/bin/sleep", "3600"]  # absolute: podman's imported image has no PATH
PODMAN_POD = "nanokube-bench"
PODMAN_IMAGE = "localhost/nanokube-bench-busybox:latest"
PR_SET_PDEATHSIG = 1
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
        for agent in other_agents():
            print(f"    running beside another node agent: {agent}")
    else:
        wait_for_machine(args.wait)
    print(
        f"=== node: server + agent (sqlite, HTTPS), {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    with tempfile.TemporaryDirectory(prefix="nanokube-bench-node-") as tmp:
        root = Path(tmp)
        results = Results()
        server = NodeServer(root)
        try:
            common_rss = agentless_rss(root / "agentless")
            common.run(NodeBench(args, server, results, common_rss).run())
        finally:
            teardown(server, root)
        if args.podman_runs > 0:
            podman_side_by_side(root / "podman", args.podman_runs, results)


class Results:
    """Figures one phase hands to a later one (the podman ratio needs nanokube's p50)."""

    p50: float | None = None


# --- the machine --------------------------------------------------------------------------


def other_agents() -> list[str]:
    """Node agents running on this machine now, as `pid: command` lines."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        words = " ".join(argv)
        if "nanokube" not in words:
            continue
        server = "server" in argv and "--disable-agent" not in argv
        if server or "agent" in argv:
            found.append(f"{entry.name}: {words[:160]}")
    listening = subprocess.run(
        ["ss", "-Htln", "sport = :10250"], capture_output=True, text=True
    ).stdout
    if listening.strip():
        found.append(f"a listener on port 10250: {listening.split()[3]}")
    return found


def wait_for_machine(timeout: float) -> None:
    """Wait (killing nothing) until no other node agent runs; SystemExit after `timeout`."""
    deadline = time.monotonic() + timeout
    said = False
    while agents := other_agents():
        if time.monotonic() > deadline:
            print("    another node agent is still running; not starting:")
            for a in agents:
                print(f"      {a}")
            raise SystemExit(3)
        if not said:
            print(f"    another node agent runs; waiting up to {timeout:.0f} s:")
            for a in agents:
                print(f"      {a}")
            said = True
        time.sleep(5)


def die_with_parent() -> None:
    """In the child: SIGKILL it if the benchmark dies, so no server outlives it."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class NodeServer(common.Server):
    """`common.Server` with its node agent, beside (never over) any other agent."""

    def __init__(self, root: Path) -> None:
        super().__init__(root / "data", agent=True)
        self.host = root / "host"  # the agent's runtime state and pod logs
        self.cgroup_root = f"/nanokube-bench-{os.getpid()}"
        self.preexec_fn = die_with_parent

    @property
    def runc_root(self) -> str:
        return str(self.host / "run" / "runc")

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--node-name",
            NODE_NAME,
            "--kubelet-port",
            str(common.free_port()),
            "--cni-bridge",
            BRIDGE,
            "--cluster-cidr",
            CLUSTER_CIDR,
            "--state-dir",
            str(self.host / "run"),
            "--pod-log-dir",
            str(self.host / "logs"),
            "--cgroup-root",
            self.cgroup_root,
        ]

    def runc_containers(self) -> list[str]:
        out = subprocess.run(
            ["runc", "--root", self.runc_root, "list", "-q"], capture_output=True, text=True
        ).stdout
        return out.split()

    def shims(self) -> list[int]:
        """Pids of this agent's container monitors (they outlive the server by design)."""
        marker = f"runc_root={self.runc_root}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if marker in (entry / "cmdline").read_bytes():
                        pids.append(int(entry.name))
        return pids


def agentless_rss(data_dir: Path) -> float:
    """Idle RSS of a `--disable-agent` server: what the agent adds is the rest."""
    server = common.Server(data_dir)
    try:
        server.start()
        time.sleep(1.0)
        return server.rss_mb()
    finally:
        server.stop()


def cpu_with_children(pid: int) -> tuple[float, float]:
    """CPU seconds of a process itself, and of its children it has waited for."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        own = int(fields[11]) + int(fields[12])  # utime, stime
        children = int(fields[13]) + int(fields[14])  # cutime, cstime
        return own / common.CLOCK_TICKS, children / common.CLOCK_TICKS
    return 0.0, 0.0


def others_busy(pid: int, seconds: float = 2.0) -> float:
    """Cores the rest of the machine keeps busy while `pid` idles (other helpers' work)."""
    busy0, own0 = common.machine_busy_seconds(), sum(cpu_with_children(pid))
    time.sleep(seconds)
    busy, own = common.machine_busy_seconds() - busy0, sum(cpu_with_children(pid)) - own0
    return (busy - own) / seconds


def pss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return 0.0


def teardown(server: NodeServer, root: Path) -> None:
    """Stop the server; remove whatever its agent left: containers, mounts, cgroups, bridge."""
    server.stop()
    left = server.runc_containers()
    if left:
        print(f"    {len(left)} containers left after the drain: force-removing them")
        for cid in left:
            subprocess.run(["runc", "--root", server.runc_root, "delete", "-f", cid])
    with open("/proc/self/mountinfo") as f:
        targets = [ln.split()[4] for ln in f if ln.split()[4].startswith(str(root))]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)
    for controller in Path("/sys/fs/cgroup").iterdir():
        top = controller / server.cgroup_root.lstrip("/")
        if top.is_dir() and not top.is_symlink():
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    shims = server.shims()
    if shims:
        print(f"    shims still running after teardown: {shims}")


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
                await self.drain()
                await self.tracker.stop()
        finally:
            await self.client.close()

    async def phases(self) -> None:
        await asyncio.sleep(1.0)
        others = await asyncio.to_thread(others_busy, self.server.pid)
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
        cpu0 = self.server.cpu_seconds()
        times, bind_times = [], []
        for i in range(self.args.pods):
            name = f"seq-{i}"
            times.append(await self.create_and_wait(name))
            bind_times.append(self.tracker.bound[name] - self._created_at)
        cpu = self.server.cpu_seconds() - cpu0
        self.profile_stop(recording)
        times.sort()
        p50, p99 = common.quantile(times, 0.5), common.quantile(times, 0.99)
        self.results.p50 = p50
        figure("create -> Running p50", f"{p50 * 1000:.0f} ms", "<= 200 ms", p50 <= 0.2)
        figure("create -> Running p99", f"{p99 * 1000:.0f} ms", "<= 500 ms", p99 <= 0.5)
        figure("  min / max", f"{times[0] * 1000:.0f} / {times[-1] * 1000:.0f} ms")
        bind_p50 = common.median(bind_times)
        figure("  of which create -> bound (scheduler) p50", f"{bind_p50 * 1000:.0f} ms")
        figure("  server CPU per pod", f"{cpu / len(times) * 1000:.0f} ms")
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
        figure("  this benchmark (client and watch)", f"{bench:.1f} s")
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
        pss = sum(pss_mb(p) for p in shims)
        figure(f"{len(shims)} container shims: RSS / PSS", f"{rss:.0f} / {pss:.0f} MB")
        if shims:
            figure("  per shim RSS / PSS", f"{rss / len(shims):.1f} / {pss / len(shims):.1f} MB")

    async def wait_node_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(errors.NotFound):
                node = await self.client.get(NODE, NODE_NAME)
                conditions = (node.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError(
            f"node {NODE_NAME} not Ready after {timeout}s:\n{self.server.log_tail()}"
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
        return pyspy.Recording(self.server.pid, self.args.profile / f"node-{name}.txt")

    def profile_stop(self, recording: pyspy.Recording | None) -> None:
        if recording is not None:
            recording.stop()
            if recording.output.exists():
                print(f"    py-spy of the server ({recording.output}):")
                print(pyspy.summarize(recording.output, top=20))


# --- podman -------------------------------------------------------------------------------

POD_YAML = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {PODMAN_POD}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: {PODMAN_IMAGE}
    command: [{", ".join(f'"{w}"' for w in COMMAND)}]
"""
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=10000:10000", "nproc=1000:1000"]
[engine]
runtime = "runc"
"""


class Podman:
    """`podman --runtime runc` with a private containers.conf (the ulimits `kube play` lacks)."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        conf = workdir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.yaml = workdir / "pod.yaml"
        self.yaml.write_text(POD_YAML)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", "--runtime", "runc", *args], capture_output=True, text=True, env=self.env
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {done.returncode}\n{done.stderr[-800:]}")
        return done

    def import_image(self) -> None:
        """The same busybox layer nanokube's image has, as a `podman import`ed image."""
        layer = self.workdir / "rootfs.tar"
        layer.write_bytes(busybox.busybox_layer())
        self.run("import", str(layer), PODMAN_IMAGE)

    def play(self) -> float:
        """Seconds `podman kube play` takes to return with the pod running; then remove it."""
        t0 = time.perf_counter()
        self.run("kube", "play", str(self.yaml))
        elapsed = time.perf_counter() - t0
        state = self.run("pod", "inspect", PODMAN_POD, "--format", "{{.State}}").stdout.strip()
        if state != "Running":
            raise RuntimeError(f"podman pod {state!r} after kube play, not Running")
        self.remove_pod()
        return elapsed

    def remove_pod(self) -> None:
        self.run("pod", "rm", "--force", "--time", "0", PODMAN_POD, check=False)

    def cleanup(self) -> None:
        self.remove_pod()
        self.run("rmi", "--force", PODMAN_IMAGE, check=False)


def podman_side_by_side(workdir: Path, runs: int, results: Results) -> None:
    print(f"--- podman kube play of the same pod, {runs} runs")
    if shutil.which("podman") is None:
        note("podman not installed (apt-get install -y podman): no comparison")
        return
    podman = Podman(workdir)
    if re.search(rf"\b{PODMAN_POD}\b", podman.run("pod", "ps", "--format", "{{.Name}}").stdout):
        note(f"a podman pod {PODMAN_POD} exists already: not touching it")
        return
    try:
        podman.import_image()
        podman.play()  # warm-up: the first play builds podman's pause image
        times = sorted(podman.play() for _ in range(runs))
    finally:
        podman.cleanup()
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
