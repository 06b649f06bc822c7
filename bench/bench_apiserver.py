"""API server figures: start time, creates, gets, lists, watch fan-out and memory, over HTTPS.

Run: .venv/bin/python -m bench apiserver [-- --pods N --client-procs K --profile DIR]
(or `python -m bench.bench_apiserver ARGS`, or `make bench` for every benchmark).
Prints figures and their targets; never asserts. About a minute with the defaults.

Everything is measured against a real `nanokube server --disable-agent`
subprocess with the sqlite store, reached over TLS with the admin client
certificate of the kubeconfig it writes, in this order on one data dir:

1. start: spawn to `/readyz` 200, a cold start (certificates created) then
   the median of 5 restarts; idle RSS after start
2. creates: `--pods` realistic one-container pods, 16 keep-alive clients
3. GETs of single pods, 16 clients, for `--get-seconds`
4. lists of all the pods: one GET without limit, and `limit=500` pages as
   kubectl fetches them (JSON, and kubectl's Table form)
5. RSS with the pods stored
6. watch fan-out: `--watchers` watch connections on pods from
   `--watch-procs` processes; spaced single writes, then a burst; the latency
   from a write's acknowledgement to each watcher's receipt

Load generator vs server (the machine has 2 cores, shared): the server is one
asyncio thread, so it can use at most one core. Each phase prints the
server's CPU use (from /proc) next to its clients' and the rest of the
machine's: a server near 100% of a core is the limit; a server well below it
while clients use the other core means the figure is the client's. The
server's CPU time per request also gives its capacity on a core of its own.
With `--profile DIR`, py-spy samples the server during creates, GETs and the
watch writes, and the first client process during creates and GETs, and the
top functions are printed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench import common, loadgen, pyspy
from bench.common import figure, note

NAMESPACE = "bench"
WATCH_NAMESPACE = "bench-watch"
TABLE_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_apiserver", description=__doc__.split("\n")[0])
    p.add_argument("--pods", type=int, default=10_000, help="pods created (and then listed)")
    p.add_argument("--clients", type=int, default=16, help="concurrent requests in flight")
    p.add_argument("--client-procs", type=int, default=1, help="processes the clients run in")
    p.add_argument("--get-seconds", type=float, default=6.0)
    p.add_argument("--starts", type=int, default=5, help="restarts timed after the cold start")
    p.add_argument("--watchers", type=int, default=1000)
    p.add_argument("--watch-procs", type=int, default=4)
    p.add_argument("--watch-writes", type=int, default=30, help="spaced writes, 150 ms apart")
    p.add_argument("--burst", type=int, default=100, help="back-to-back writes after those")
    p.add_argument(
        "--profile", type=Path, help="py-spy the server (and a client) into this directory"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    print(
        f"=== apiserver: HTTPS, sqlite store, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        if pyspy.available() is None:
            print("    py-spy not installed: running without --profile")
            args.profile = None
    with tempfile.TemporaryDirectory(prefix="nanokube-bench-") as tmp:
        server = common.Server(Path(tmp) / "data")
        try:
            Bench(args, server, Path(tmp)).run()
        finally:
            server.stop()


class Bench:
    def __init__(self, args: argparse.Namespace, server: common.Server, tmp: Path) -> None:
        self.args = args
        self.server = server
        self.tmp = tmp
        self.mp = multiprocessing.get_context("spawn")
        self.tls: dict[str, Any] = {}
        self.names = [f"pod-{i:06d}" for i in range(args.pods)]

    def run(self) -> None:
        self.starts()
        self.tls = common.client_tls(self.server.kubeconfig, self.tmp / "client")
        client = common.Client(self.tls)
        for ns in (NAMESPACE, WATCH_NAMESPACE):
            client.json("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        self.first_requests(client)
        self.creates()
        self.gets()
        self.lists(client)
        figure(f"RSS with {len(self.names):,} pods stored", rss_text(self.server.pid))
        self.watches(client)
        client.close()

    # -- 1. start and idle memory -------------------------------------------

    def starts(self) -> None:
        print("--- start")
        cold = self.server.start()
        times, cpu, rss = [], [], []
        for _ in range(self.args.starts):
            self.server.stop()
            times.append(self.server.start())
            cpu.append(self.server.cpu_seconds())
            time.sleep(0.3)  # let start-up garbage settle before reading RSS
            rss.append(self.server.rss_mb())
        t = common.median(times)
        figure(
            f"spawn -> /readyz 200 (median of {len(times)})",
            f"{t * 1000:.0f} ms",
            "<= 500 ms",
            t <= 0.5,
        )
        note(
            f"all: {', '.join(f'{x * 1000:.0f}' for x in times)} ms; the server's own CPU time "
            f"to ready {common.median(cpu) * 1000:.0f} ms (load-independent); cold first start "
            f"(creates the CAs and certificates) {cold * 1000:.0f} ms"
        )
        r = common.median(rss)
        figure("idle RSS after start", f"{r:.0f} MB", "<= 80 MB", r <= 80)

    def first_requests(self, client: common.Client) -> None:
        """The first pod create after start pays for compiling the pod schema."""
        for i in range(2):
            t0 = time.perf_counter()
            name = f"first-{i}"
            client.json(
                "POST", f"/api/v1/namespaces/{WATCH_NAMESPACE}/pods", loadgen.pod_body(name, i)
            )
            took = time.perf_counter() - t0
            figure(
                f"{'first' if i == 0 else 'second'} pod create after start", f"{took * 1000:.0f} ms"
            )
            client.request("DELETE", f"/api/v1/namespaces/{WATCH_NAMESPACE}/pods/{name}")

    # -- 2, 3. creates and gets -----------------------------------------------

    def creates(self) -> None:
        print(f"--- create {len(self.names):,} pods")
        res = self.http_phase("create", self.args.client_procs, "create")
        figure(
            f"pod creates/s ({self.args.clients} clients)",
            f"{res['rate']:,.0f}/s",
            ">= 1,000/s",
            res["rate"] >= 1000,
        )
        figure("create latency p50 / p99", f"{res['p50']:.1f} / {res['p99']:.1f} ms")
        self.cpu_note(res)

    def gets(self) -> None:
        print(f"--- GET single pods for {self.args.get_seconds:.0f} s")
        res = self.http_phase("get", self.args.client_procs, "get")
        figure(
            f"pod GETs/s ({self.args.clients} clients)",
            f"{res['rate']:,.0f}/s",
            ">= 5,000/s",
            res["rate"] >= 5000,
        )
        figure("GET latency p50 / p99", f"{res['p50']:.1f} / {res['p99']:.1f} ms")
        self.cpu_note(res)

    def http_phase(self, op: str, procs: int, profile_name: str) -> dict[str, Any]:
        """Run `op` in `procs` client processes that start together; the merged figures."""
        barrier = self.mp.Barrier(procs + 1)
        out = self.mp.Queue()
        workers = []
        per_proc = -(-len(self.names) // procs)
        for i in range(procs):
            names = self.names[i * per_proc : (i + 1) * per_proc] if op == "create" else self.names
            spec = {
                "tls": self.tls,
                "op": op,
                "namespace": NAMESPACE,
                "concurrency": max(1, self.args.clients // procs),
                "names": names,
                "first_index": i * per_proc,
                "seconds": self.args.get_seconds,
                "seed": i,
            }
            w = self.mp.Process(target=loadgen.http_worker, args=(spec, barrier, out))
            w.start()
            workers.append(w)
        barrier.wait(timeout=120)
        recording = self.profile_start(profile_name, workers[0].pid)
        server0, machine0 = self.server.cpu_seconds(), common.machine_busy_seconds()
        results = [out.get(timeout=600) for _ in workers]
        server1, machine1 = self.server.cpu_seconds(), common.machine_busy_seconds()
        self.profile_stop(recording)
        for w in workers:
            w.join()
        latencies = sorted(x for r in results for x in r["latencies"])
        failures: dict[int, int] = {}
        for r in results:
            for status, n in r["failures"].items():
                failures[status] = failures.get(status, 0) + n
        if failures:
            note(f"FAILED requests by status: {failures}")
        wall = max(r["end"] for r in results) - min(r["start"] for r in results)
        client_cpu = sum(r["cpu"] for r in results)
        return {
            "n": len(latencies),
            "rate": len(latencies) / wall,
            "p50": common.quantile(latencies, 0.5) * 1000,
            "p99": common.quantile(latencies, 0.99) * 1000,
            "wall": wall,
            "server_cpu": server1 - server0,
            "client_cpu": client_cpu,
            "client_cpu_max": max(r["cpu"] for r in results),
            "procs": procs,
            "others": max(0.0, (machine1 - machine0) - (server1 - server0) - client_cpu),
        }

    def cpu_note(self, res: dict[str, Any]) -> None:
        wall, n = res["wall"], res["n"]
        per_req = res["server_cpu"] / n * 1e6
        note(
            f"server {res['server_cpu'] / wall:.0%} of a core, {per_req:.0f} us CPU/request "
            f"(= {1e6 / per_req:,.0f}/s on a free core); clients {res['client_cpu'] / wall:.2f} "
            f"cores in {res['procs']} proc(s), busiest {res['client_cpu_max'] / wall:.0%}, "
            f"{res['client_cpu'] / n * 1e6:.0f} us/request; other processes "
            f"{res['others'] / wall:.2f} cores"
        )

    # -- 4. lists ------------------------------------------------------------

    def lists(self, client: common.Client) -> None:
        n = len(self.names)
        print(f"--- list {n:,} pods")
        times, decode, size = [], [], 0
        for _ in range(5):
            t0 = time.perf_counter()
            status, raw = client.request("GET", "/api/v1/pods")
            times.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            items = len(orjson.loads(raw)["items"])
            decode.append(time.perf_counter() - t1)
            size = len(raw)
        t = common.median(times)
        figure(
            f"list {items:,} pods, no limit (median of 5)",
            f"{t * 1000:.0f} ms",
            "<= 300 ms",
            t <= 0.3,
        )
        note(
            f"{size / 1e6:.1f} MB of JSON; the client's orjson.loads takes "
            f"{common.median(decode) * 1000:.0f} ms more (not counted)"
        )
        for label, accept in (
            ("JSON", "application/json"),
            ("Table, as kubectl get", TABLE_ACCEPT),
        ):
            t, pages, total = paged_list(client, accept)
            figure(f"list, limit=500 pages, {label}", f"{t * 1000:.0f} ms")
            rest = common.median(pages[1:]) * 1000 if len(pages) > 1 else float("nan")
            note(
                f"sum of {len(pages)} pages, {total:,} rows; first page {pages[0] * 1000:.1f} ms "
                f"(watch cache), the others {rest:.1f} ms each (median; continue = from the store)"
            )

    # -- 6. watches ------------------------------------------------------------

    def watches(self, client: common.Client) -> None:
        a = self.args
        print(f"--- {a.watchers} watchers on pods, {a.watch_procs} client processes")
        rv = client.json("GET", f"/api/v1/namespaces/{WATCH_NAMESPACE}/pods")["metadata"][
            "resourceVersion"
        ]
        path = f"/api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion={rv}"
        stop, out = self.mp.Event(), self.mp.Queue()
        workers = []
        per_proc = -(-a.watchers // a.watch_procs)
        t0 = time.perf_counter()
        for i in range(a.watch_procs):
            conns = min(per_proc, a.watchers - i * per_proc)
            spec = {"tls": self.tls, "path": path, "connections": conns}
            w = self.mp.Process(target=loadgen.watch_worker, args=(spec, stop, out))
            w.start()
            workers.append(w)
        try:
            for _ in workers:
                msg = out.get(timeout=120)
                if "error" in msg:
                    raise RuntimeError(msg["error"])
            opened = time.perf_counter() - t0
            figure(f"open {a.watchers} watches (incl. process spawn)", f"{opened:.1f} s")
            figure(f"RSS with {a.watchers} watches open", rss_text(self.server.pid))
            acks, server_cpu, wall = self.watch_writes(client)
        finally:
            stop.set()
        results = [out.get(timeout=120) for _ in workers]
        for w in workers:
            w.join()
        for r in results:
            if "error" in r:
                raise RuntimeError(r["error"])
        seen = [conn for r in results for conn in r["seen"]]
        spaced = [n for n in acks if n.startswith("watch-0")]
        burst = [n for n in acks if n.startswith("watch-1")]
        for label, names in (("spaced writes", spaced), (f"burst of {a.burst}", burst)):
            lat, missing = [], 0
            for conn in seen:
                for name in names:
                    got = conn.get(name)
                    if got is None:
                        missing += 1
                    else:
                        lat.append(got - acks[name])
            lat.sort()
            p50, p99, worst = (common.quantile(lat, q) * 1000 for q in (0.5, 0.99, 1.0))
            if label == "spaced writes":
                figure(
                    f"ack -> receipt p99, {len(names)} {label}",
                    f"{p99:.0f} ms",
                    "<= 200 ms",
                    p99 <= 200 and not missing,
                )
            figure(f"ack -> receipt p50 / max ({label})", f"{p50:.0f} / {worst:.0f} ms")
            if missing:
                note(f"MISSING deliveries: {missing} of {len(names) * len(seen)}")
        deliveries = len(seen) * len(spaced)
        client_cpu = sum(r["cpu"] for r in results)
        per = client_cpu / max(1, len(seen) * len(acks)) * 1e6
        note(
            f"server: {server_cpu / deliveries * 1e6:.0f} us CPU per delivery in the spaced "
            f"writes ({server_cpu / wall:.0%} of a core); clients: {per:.0f} us CPU per delivery,"
            f" so a process's own queueing adds <= {per * per_proc / 1000:.1f} ms"
        )

    def watch_writes(self, client: common.Client) -> tuple[dict[str, float], float, float]:
        """Spaced single creates, then a burst; each pod's acknowledgement time."""
        a = self.args
        acks: dict[str, float] = {}
        recording = self.profile_start("watch")
        server0, t0 = self.server.cpu_seconds(), time.monotonic()
        for i in range(a.watch_writes):
            name = f"watch-0{i:05d}"
            client.json(
                "POST", f"/api/v1/namespaces/{WATCH_NAMESPACE}/pods", loadgen.pod_body(name, i)
            )
            acks[name] = time.monotonic()
            time.sleep(max(0.0, 0.15 - (time.monotonic() - acks[name])))
        server_cpu, wall = self.server.cpu_seconds() - server0, time.monotonic() - t0
        self.profile_stop(recording)
        for i in range(a.burst):
            name = f"watch-1{i:05d}"
            client.json(
                "POST", f"/api/v1/namespaces/{WATCH_NAMESPACE}/pods", loadgen.pod_body(name, i)
            )
            acks[name] = time.monotonic()
        time.sleep(3.0)  # deliveries later than this count as missing
        return acks, server_cpu, wall

    # -- profiling -------------------------------------------------------------

    def profile_start(self, name: str, client: int | None = None) -> list[pyspy.Recording]:
        """py-spy the server (and the client process `client`, if given) from now on."""
        if not self.args.profile:
            return []
        recordings = [pyspy.Recording(self.server.pid, self.args.profile / f"server-{name}.txt")]
        if client is not None:
            recordings.append(pyspy.Recording(client, self.args.profile / f"client-{name}.txt"))
        return recordings

    def profile_stop(self, recordings: list[pyspy.Recording]) -> None:
        for r in recordings:
            r.stop()
        for r in recordings:
            if r.output.exists():
                print(f"    py-spy -> {r.output}")
                print(pyspy.summarize(r.output, top=15 if "server" in r.output.name else 8))


def rss_text(pid: int) -> str:
    """VmRSS with its anonymous (heap) and file-backed (sqlite mmap, libraries) parts."""
    parts = common.memory_status(pid)
    return (
        f"{parts['VmRSS'] / 1024:.0f} MB (anon {parts['RssAnon'] / 1024:.0f}, "
        f"file {parts['RssFile'] / 1024:.0f})"
    )


def paged_list(client: common.Client, accept: str) -> tuple[float, list[float], int]:
    """List all pods in limit=500 pages following `continue`.

    Seconds the requests took (the client's decoding of each page left out),
    each page's seconds, rows.
    """
    token, pages, rows = "", [], 0
    while True:
        path = "/api/v1/pods?limit=500" + (f"&continue={token}" if token else "")
        t = time.perf_counter()
        status, raw = client.request("GET", path, accept=accept)
        pages.append(time.perf_counter() - t)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {raw[:300]!r}")
        body = orjson.loads(raw)
        rows += len(body.get("items") or body.get("rows") or [])
        token = body["metadata"].get("continue", "")
        if not token:
            return sum(pages), pages, rows


if __name__ == "__main__":
    main()
