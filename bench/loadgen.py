"""Load generator processes for the API server benchmark.

Each function here is the body of one client process, started by
`bench_apiserver` with multiprocessing's spawn context, so that clients and
the server never share an interpreter or a GIL and the number of client
processes is a knob: a figure is the server's only if adding client processes
does not change it (the benchmark prints each process's CPU use so a
saturated client is visible).

- `http_worker`: aiohttp with keep-alive TLS connections (the admin client
  certificate), `concurrency` requests in flight; creates a list of pods or
  GETs pods for a while. All processes open their connections first and
  start together at a barrier; each reports its latencies, its start and end
  on the shared monotonic clock, and its CPU time.
- `watch_worker`: many watch connections on a bare asyncio protocol (no HTTP
  client library: the receipt time is taken in `data_received`, the first
  moment Python sees the bytes, and nothing but a search for pod names runs
  per chunk), so that one process can hold hundreds of watches and add
  little delay of its own.
"""

from __future__ import annotations

import asyncio
import random
import re
import ssl
import time
from typing import Any

from bench import common

Obj = dict[str, Any]


def pod_body(name: str, index: int) -> Obj:
    """A pod as a Deployment's template would make it: one container, probes, resources."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "web", "tier": "frontend", "shard": str(index % 10)},
            "annotations": {"bench.nanokube.io/index": str(index)},
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.com/shop/web:1.24.3",
                    "args": ["--listen=:8080", "--log-level=info"],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [
                        {"name": "MODE", "value": "production"},
                        {"name": "CACHE_SIZE", "value": "256"},
                    ],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "64Mi"},
                        "limits": {"cpu": "500m", "memory": "128Mi"},
                    },
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": 8080},
                        "periodSeconds": 5,
                    },
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
        },
    }


def _install_uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass


def http_worker(spec: Obj, barrier: Any, out: Any) -> None:
    """One client process of the create or get load; puts its figures on `out`."""
    _install_uvloop()
    out.put(asyncio.run(_http_load(spec, barrier)))


async def _http_load(spec: Obj, barrier: Any) -> Obj:
    import aiohttp
    import orjson

    base = spec["tls"]["server"]
    ns = spec["namespace"]
    concurrency = spec["concurrency"]
    names: list[str] = spec["names"]
    connector = aiohttp.TCPConnector(
        limit=concurrency, ssl=common.ssl_context(spec["tls"]), keepalive_timeout=60
    )
    latencies: list[float] = []
    failures: dict[int, int] = {}
    async with aiohttp.ClientSession(base, connector=connector) as session:

        async def warm() -> None:
            async with session.get("/version") as resp:
                await resp.read()

        await asyncio.gather(*(warm() for _ in range(concurrency)))  # one TLS handshake each
        barrier.wait()
        start, cpu0 = time.monotonic(), time.process_time()
        deadline = start + spec.get("seconds", 0.0)
        if spec["op"] == "create":
            queue = iter(enumerate(names, spec["first_index"]))

            async def one() -> None:
                headers = {"Content-Type": "application/json"}
                for index, name in queue:
                    body = orjson.dumps(pod_body(name, index))
                    t = time.perf_counter()
                    async with session.post(
                        f"/api/v1/namespaces/{ns}/pods", data=body, headers=headers
                    ) as resp:
                        await resp.read()
                        status = resp.status
                    latencies.append(time.perf_counter() - t)
                    if status != 201:
                        failures[status] = failures.get(status, 0) + 1

        else:
            rng = random.Random(spec["seed"])

            async def one() -> None:
                while time.monotonic() < deadline:
                    name = rng.choice(names)
                    t = time.perf_counter()
                    async with session.get(f"/api/v1/namespaces/{ns}/pods/{name}") as resp:
                        await resp.read()
                        status = resp.status
                    latencies.append(time.perf_counter() - t)
                    if status != 200:
                        failures[status] = failures.get(status, 0) + 1

        await asyncio.gather(*(one() for _ in range(concurrency)))
        end, cpu1 = time.monotonic(), time.process_time()
    return {
        "latencies": latencies,
        "failures": failures,
        "start": start,
        "end": end,
        "cpu": cpu1 - cpu0,
    }


# -- watches -----------------------------------------------------------------

_NAME = re.compile(rb'"name":"(watch-\d+)"')
_TAIL = 64  # bytes kept between chunks, so a name split across two chunks is still found


class _WatchProtocol(asyncio.Protocol):
    """One watch connection; records when each watched pod name first arrives."""

    def __init__(self, request: bytes, ready: asyncio.Future[None]) -> None:
        self.request = request
        self.ready = ready
        self.seen: dict[bytes, float] = {}
        self.buffer = b""
        self.status = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]  # uvloop's TLS transport

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.buffer + data
        if not self.status:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buf
                return
            self.status = int(buf.split(b" ", 2)[1])
            if not self.ready.done():
                self.ready.set_result(None)
            buf = buf[end + 4 :]
        for m in _NAME.finditer(buf):
            self.seen.setdefault(m.group(1), now)
        self.buffer = buf[-_TAIL:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done() and not self.ready.cancelled():
            self.ready.set_exception(ConnectionError(f"watch closed before its headers: {exc}"))


def watch_worker(spec: Obj, stop: Any, out: Any) -> None:
    """Hold `spec["connections"]` watches until `stop` is set; put what they saw on `out`."""
    _install_uvloop()
    try:
        out.put(asyncio.run(_watch(spec, stop, out)))
    except Exception as e:  # noqa: BLE001 - the parent must hear of it, not wait forever
        out.put({"error": f"{type(e).__name__}: {e}"})


async def _watch(spec: Obj, stop: Any, out: Any) -> Obj:
    loop = asyncio.get_running_loop()
    host, port = spec["tls"]["server"].removeprefix("https://").rsplit(":", 1)
    ctx: ssl.SSLContext = common.ssl_context(spec["tls"])
    request = (
        f"GET {spec['path']} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Accept: application/json\r\nUser-Agent: nanokube-bench-watch\r\n\r\n"
    ).encode()
    protocols: list[_WatchProtocol] = []
    transports: list[asyncio.BaseTransport] = []

    async def open_one() -> None:
        ready: asyncio.Future[None] = loop.create_future()
        proto = _WatchProtocol(request, ready)
        transport, _ = await loop.create_connection(lambda: proto, host, int(port), ssl=ctx)
        transports.append(transport)
        protocols.append(proto)
        await ready

    # Opened a few dozen at a time: a thousand TLS handshakes at once only queue up.
    sem = asyncio.Semaphore(32)

    async def bounded() -> None:
        async with sem:
            await open_one()

    await asyncio.gather(*(bounded() for _ in range(spec["connections"])))
    bad = [p.status for p in protocols if p.status != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} watches answered {bad[0]}")
    out.put({"ready": len(protocols)})
    cpu0 = time.process_time()
    while not stop.is_set():
        await asyncio.sleep(0.02)
    cpu1 = time.process_time()
    for t in transports:
        t.close()
    return {
        "seen": [{k.decode(): v for k, v in p.seen.items()} for p in protocols],
        "closed_early": sum(p.closed for p in protocols),
        "cpu": cpu1 - cpu0,
    }
