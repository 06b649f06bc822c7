"""Container probes (liveness, readiness, startup) and the handlers they share with hooks.

As upstream's ``pkg/kubelet/prober``: one `ProbeWorker` per container instance and
probe type, a task that waits ``initialDelaySeconds`` after the container started, then
probes every ``periodSeconds`` with ``timeoutSeconds``, and flips its result only after
``successThreshold`` successes or ``failureThreshold`` failures in a row. Results start
where upstream's do: readiness *failure* (not ready until proven), liveness *success*,
startup *unknown* (not started). Liveness and readiness do not run until the startup
probe has succeeded; the startup probe stops once it succeeds. A liveness or startup
failure is final for that instance (the pod worker kills and replaces it, and the
replacement gets new workers). Every failed attempt records an ``Unhealthy`` event as
upstream does (``Liveness probe failed: <output>``).

`ProbeManager` holds the workers of one pod and wakes the pod worker whenever a result
changes, so readiness reaches the status and a liveness failure the restart logic
without polling.

Handlers: ``exec`` (through the runtime, exit 0 = success), ``httpGet`` (2xx/3xx),
``tcpSocket`` (connects), ``grpc`` (the standard ``grpc.health.v1.Health/Check`` over
cleartext HTTP/2, spoken directly: SERVING = success).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from nanokube.runtime.contract import Runtime

log = logging.getLogger(__name__)

Obj = dict[str, Any]
PROBE_TYPES = ("startup", "readiness", "liveness")
_OUTPUT_LIMIT = 10 * 1024  # upstream's maxProbeMessageLength-ish cap on event text


@dataclass
class Outcome:
    ok: bool
    message: str = ""


# --- handlers --------------------------------------------------------------------------


def resolve_port(port: Any, container: Obj) -> int:
    """A probe/hook port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"unknown port name {port!r}")


async def run_handler(
    handler: Obj,
    runtime: Runtime,
    container_id: str,
    container: Obj,
    pod_ip: str,
    timeout: float,
) -> Outcome:
    """Run one probe or hook handler (``exec``, ``httpGet``, ``tcpSocket``, ``grpc``)."""
    try:
        if "exec" in handler:
            return await exec_action(runtime, container_id, handler["exec"], timeout)
        if "httpGet" in handler:
            return await http_get(handler["httpGet"], container, pod_ip, timeout)
        if "tcpSocket" in handler:
            return await tcp_socket(handler["tcpSocket"], container, pod_ip, timeout)
        if "grpc" in handler:
            g = handler["grpc"]
            return await grpc_check(pod_ip, int(g["port"]), g.get("service") or "", timeout)
    except Exception as e:  # a broken handler is a failed probe, never a crashed worker
        return Outcome(False, str(e) or type(e).__name__)
    return Outcome(False, "probe has no handler")


async def exec_action(runtime: Runtime, container_id: str, action: Obj, timeout: float) -> Outcome:
    command = list(action.get("command") or [])
    result = await runtime.exec_sync(container_id, command, timeout)
    output = (result.stdout + result.stderr).decode("utf-8", "replace")[:_OUTPUT_LIMIT]
    if result.exit_code == -1:
        return Outcome(False, f'command "{" ".join(command)}" timed out')
    if result.exit_code != 0:
        return Outcome(False, output or f"command exited with code {result.exit_code}")
    return Outcome(True, output)


async def http_get(action: Obj, container: Obj, pod_ip: str, timeout: float) -> Outcome:
    scheme = (action.get("scheme") or "HTTP").lower()
    host = action.get("host") or pod_ip
    port = resolve_port(action.get("port"), container)
    path = action.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    url = f"{scheme}://{host}:{port}{path}"
    headers = {"User-Agent": "kube-probe/1.33", "Accept": "*/*"}
    for h in action.get("httpHeaders") or []:
        headers[h["name"]] = h.get("value", "")
    ctx: ssl.SSLContext | bool = False if scheme == "https" else True
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url, headers=headers, ssl=ctx, allow_redirects=True) as resp,
        ):
            body = (await resp.content.read(_OUTPUT_LIMIT)).decode("utf-8", "replace")
            if 200 <= resp.status < 400:
                return Outcome(True, body)
            return Outcome(False, f"HTTP probe failed with statuscode: {resp.status}")
    except TimeoutError:
        return Outcome(
            False,
            f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting '
            "headers)",
        )
    except aiohttp.ClientError as e:
        return Outcome(False, f'Get "{url}": {e}')


async def tcp_socket(action: Obj, container: Obj, pod_ip: str, timeout: float) -> Outcome:
    host = action.get("host") or pod_ip
    port = resolve_port(action.get("port"), container)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return Outcome(False, f"dial tcp {host}:{port}: i/o timeout")
    except OSError as e:
        return Outcome(False, f"dial tcp {host}:{port}: connect: {e.strerror or e}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Outcome(True)


def _frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([ftype, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _hpack_literal(name: str | int, value: str) -> bytes:
    """A header as an HPACK literal without indexing, no Huffman (values < 127 bytes)."""
    out = bytes([name]) if isinstance(name, int) else b"\x00" + bytes([len(name)]) + name.encode()
    return out + bytes([len(value)]) + value.encode()


async def grpc_check(host: str, port: int, service: str, timeout: float) -> Outcome:
    """``grpc.health.v1.Health/Check`` over h2c with prior knowledge, as the kubelet's
    gRPC prober: SERVING (1) is success, anything else (or an RPC error) failure."""
    message = (b"\x0a" + bytes([len(service)]) + service.encode()) if service else b""
    headers = (
        b"\x83\x86"  # :method POST, :scheme http (static table)
        + _hpack_literal(4, "/grpc.health.v1.Health/Check")
        + _hpack_literal(1, f"{host}:{port}")
        + _hpack_literal("content-type", "application/grpc")
        + _hpack_literal("te", "trailers")
    )
    request = (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + _frame(4, 0, 0, b"")
        + _frame(1, 0x4, 1, headers)
        + _frame(0, 0x1, 1, b"\x00" + struct.pack(">I", len(message)) + message)
    )
    target = f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request)
                while True:
                    head = await reader.readexactly(9)
                    length = int.from_bytes(head[:3], "big")
                    ftype, flags = head[3], head[4]
                    payload = await reader.readexactly(length)
                    if ftype == 4 and not flags & 1:  # SETTINGS: acknowledge
                        writer.write(_frame(4, 1, 0, b""))
                    elif ftype == 6 and not flags & 1:  # PING: answer
                        writer.write(_frame(6, 1, 0, payload))
                    elif ftype == 0 and len(payload) >= 6:  # DATA: the response message
                        body = payload[5:]
                        status = body[1] if len(body) >= 2 and body[0] == 0x08 else 0
                        if status == 1:
                            return Outcome(True)
                        names = {0: "UNKNOWN", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
                        return Outcome(
                            False,
                            f'service unhealthy (responded with "{names.get(status, status)}")',
                        )
                    elif (ftype == 1 and flags & 1) or ftype in (3, 7):
                        return Outcome(False, f"rpc error from {target}: no health response")
            finally:
                writer.close()
    except TimeoutError:
        return Outcome(False, f"timeout: health rpc did not complete within {timeout}s")
    except (OSError, asyncio.IncompleteReadError) as e:
        return Outcome(False, f"failed to connect service {target!r} within {timeout}s: {e}")


# --- workers ---------------------------------------------------------------------------


@dataclass
class ProbeTarget:
    """The container instance a worker probes."""

    container_id: str
    container: Obj
    started_at: float
    pod_ip: str
    adopted: bool = False
    """Running before this agent started: a startup probe counts as passed (upstream)."""


EventSink = Callable[[str, str, str], None]
"""(type, reason, message) → an Event on the pod."""


class ProbeWorker:
    def __init__(
        self,
        kind: str,
        spec: Obj,
        target: ProbeTarget,
        runtime: Runtime,
        manager: ProbeManager,
    ) -> None:
        self.kind = kind
        self.spec = spec
        self.target = target
        self.runtime = runtime
        self.manager = manager
        self.result: bool | None = {"readiness": False, "liveness": True}.get(kind)
        self.message = ""
        self._successes = 0
        self._failures = 0
        self.task: asyncio.Task[None] | None = None
        if kind == "startup" and target.adopted:
            self.result = True

    def start(self) -> None:
        name = f"probe-{self.kind}-{self.target.container['name']}"
        self.task = asyncio.get_running_loop().create_task(self._run(), name=name)

    def _gated(self) -> bool:
        """Liveness and readiness wait for the startup probe."""
        return self.kind != "startup" and not self.manager.started(self.target.container_id)

    async def _run(self) -> None:
        spec = self.spec
        period = max(int(spec.get("periodSeconds") or 10), 1)
        timeout = max(int(spec.get("timeoutSeconds") or 1), 1)
        success_threshold = max(int(spec.get("successThreshold") or 1), 1)
        failure_threshold = max(int(spec.get("failureThreshold") or 3), 1)
        delay = float(spec.get("initialDelaySeconds") or 0)
        wait = self.target.started_at + delay - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        while True:
            if self.kind == "startup" and self.result:
                return
            if not self._gated():
                outcome = await run_handler(
                    spec,
                    self.runtime,
                    self.target.container_id,
                    self.target.container,
                    self.target.pod_ip,
                    timeout,
                )
                if self._observe(outcome, success_threshold, failure_threshold):
                    return
            await asyncio.sleep(period)

    def _observe(self, outcome: Outcome, success_threshold: int, failure_threshold: int) -> bool:
        """Count one attempt; True when this worker is done (a final failure)."""
        if outcome.ok:
            self._successes += 1
            self._failures = 0
            if self.result is not True and self._successes >= success_threshold:
                self._set(True, "")
            return False
        self._failures += 1
        self._successes = 0
        self.manager.event(
            "Warning",
            "Unhealthy",
            f"{self.kind.capitalize()} probe failed: {outcome.message}".rstrip(),
        )
        if self.result is not False and self._failures >= failure_threshold:
            self._set(False, outcome.message)
            return self.kind in ("liveness", "startup")
        return False

    def _set(self, result: bool, message: str) -> None:
        self.result = result
        self.message = message
        log.debug(
            "probe result container=%s probe=%s result=%s",
            self.target.container["name"],
            self.kind,
            result,
        )
        self.manager.changed()

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None


class ProbeManager:
    """The probe workers of one pod, keyed by container instance id."""

    def __init__(self, runtime: Runtime, on_change: Callable[[], None], event: EventSink) -> None:
        self.runtime = runtime
        self.on_change = on_change
        self.event_sink = event
        self._workers: dict[str, dict[str, ProbeWorker]] = {}

    def add(self, target: ProbeTarget) -> None:
        """Start the workers of a (new or adopted) running container instance."""
        if target.container_id in self._workers:
            return
        workers = {}
        for kind in PROBE_TYPES:
            spec = target.container.get(f"{kind}Probe")
            if spec:
                workers[kind] = ProbeWorker(kind, spec, target, self.runtime, self)
        self._workers[target.container_id] = workers
        for w in workers.values():
            w.start()

    def has(self, container_id: str) -> bool:
        return container_id in self._workers

    def remove(self, container_id: str) -> None:
        for w in self._workers.pop(container_id, {}).values():
            w.stop()

    def retain(self, container_ids: set[str]) -> None:
        """Stop the workers of every instance not in `container_ids` (exited, removed)."""
        for cid in [c for c in self._workers if c not in container_ids]:
            self.remove(cid)

    def stop(self) -> None:
        self.retain(set())

    def _result(self, container_id: str, kind: str) -> bool | None:
        w = self._workers.get(container_id, {}).get(kind)
        return True if w is None else w.result

    def started(self, container_id: str) -> bool:
        """Startup probe passed (or none): liveness/readiness may run, ``started`` true."""
        return bool(self._result(container_id, "startup"))

    def ready(self, container_id: str) -> bool:
        return self.started(container_id) and bool(self._result(container_id, "readiness"))

    def failed(self, container_id: str) -> tuple[str, str] | None:
        """(probe kind, message) when liveness or startup failed: restart the container."""
        workers = self._workers.get(container_id, {})
        for kind in ("startup", "liveness"):
            w = workers.get(kind)
            if w is not None and w.result is False:
                return kind, w.message
        return None

    def changed(self) -> None:
        self.on_change()

    def event(self, type_: str, reason: str, message: str) -> None:
        self.event_sink(type_, reason, message)
