"""The node agent's streaming server: what the API server proxies logs, exec, attach
and port-forward to.

Paths are the kubelet's own (`pkg/kubelet/server/server.go`), so the API server
builds them the way upstream's does:

- ``GET /containerLogs/NS/POD/CONTAINER?follow&previous&tailLines&sinceSeconds&
  sinceTime&timestamps&limitBytes``: chunked ``text/plain``
- ``GET /exec/NS/POD[/UID]/CONTAINER?command=..&input&output&error&tty``: a
  WebSocket upgrade speaking the channel protocol (`websocket`), or an
  ``Upgrade: SPDY/3.1`` with one stream per channel (`spdyexec`)
- ``GET /attach/NS/POD[/UID]/CONTAINER?input&output&error&tty``: the same, joined
  to the container's own stdio
- ``GET /portForward/NS/POD[/UID]``: a WebSocket carrying SPDY (kubectl), or the
  channel protocol with ``?ports=`` (the Python client), or plain SPDY (`portforward`)

The work is done by a `StreamingBackend`, which the kubelet implements over its
runtime; its methods map one to one to `nanokube.runtime.contract.Runtime`
(`exec`, the log file of `ContainerConfig.log_path`, the container's state)
once the kubelet has resolved the pod and container name to a container id.
A backend raises `nanokube.api.errors.StatusError`s (NotFound, BadRequest) for
what the caller got wrong; they reach kubectl as Kubernetes Status errors.

The server is HTTPS only and trusts a caller whose client certificate the
cluster's client CA signed and that is the API server (CN
``kube-apiserver-kubelet-client``) or a member of ``system:masters``; node
agents hold certificates of the same CA but may not exec into other nodes' pods.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import WSMsgType, web

from nanokube.api import errors
from nanokube.kubelet.streaming import logs, portforward, rawconn, spdy, spdyexec, websocket
from nanokube.kubelet.streaming.websocket import TerminalSize
from nanokube.runtime.contract import OutputSink

log = logging.getLogger(__name__)

API_SERVER_USER = "kube-apiserver-kubelet-client"
ADMIN_GROUP = "system:masters"
ERROR_HEADER = "X-Nanokube-Error"  # a refused upgrade's message, for the API server

__all__ = [
    "PodRef",
    "StreamingBackend",
    "TerminalSize",
    "build_app",
    "ssl_context",
    "start",
]


@dataclass(frozen=True)
class PodRef:
    """The pod a request is about; `uid` is empty when the path did not carry it."""

    namespace: str
    name: str
    uid: str = ""


class StreamingBackend(Protocol):
    """What the streaming server needs from the node: implemented by the kubelet."""

    async def exec(
        self,
        pod: PodRef,
        container: str,
        cmd: list[str],
        *,
        tty: bool,
        stdin: AsyncIterator[bytes] | None,
        stdout: OutputSink | None,
        stderr: OutputSink | None,
        resize: AsyncIterator[TerminalSize] | None,
    ) -> int:
        """`Runtime.exec` in the pod's container; returns the exit code. `resize`
        yields terminal sizes for a tty (the backend may ignore them)."""

    async def attach(
        self,
        pod: PodRef,
        container: str,
        *,
        tty: bool,
        stdin: AsyncIterator[bytes] | None,
        stdout: OutputSink | None,
        stderr: OutputSink | None,
        resize: AsyncIterator[TerminalSize] | None,
    ) -> None:
        """Join the container's main process stdio until it exits or stdin ends."""

    async def log_path(self, pod: PodRef, container: str, previous: bool) -> Path:
        """The CRI log file of the container (`previous`: of its last terminated run)."""

    async def container_running(self, pod: PodRef, container: str) -> bool:
        """Whether the container still runs: a followed log ends when it does not."""

    async def port_forward(
        self, pod: PodRef, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to `port` inside the pod's network namespace."""


def _flag(query: Any, *names: str) -> bool:
    return any(query.get(n, "").lower() in ("1", "true") for n in names)


def _int(query: Any, name: str) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.BadRequest(f"invalid {name}: {value!r}") from None


def log_options(query: Any) -> logs.LogOptions:
    since: float | None = None
    since_seconds = _int(query, "sinceSeconds")
    if since_seconds is not None:
        since = time.time() - since_seconds
    elif query.get("sinceTime"):
        try:
            since = logs.parse_timestamp(query["sinceTime"])
        except ValueError:
            raise errors.BadRequest(f"invalid sinceTime: {query['sinceTime']!r}") from None
    return logs.LogOptions(
        follow=_flag(query, "follow"),
        tail_lines=_int(query, "tailLines"),
        since=since,
        timestamps=_flag(query, "timestamps"),
        limit_bytes=_int(query, "limitBytes"),
    )


def _ports(query: Any) -> list[int]:
    """The `ports` of a channel-protocol port-forward (repeated or comma-separated)."""
    ports = []
    for value in query.getall("ports", []):
        for item in value.split(","):
            try:
                port = int(item)
            except ValueError:
                raise errors.BadRequest(f"invalid port: {item!r}") from None
            if not 0 < port < 65536:
                raise errors.BadRequest(f"port {port} must be between 1 and 65535")
            ports.append(port)
    return ports


def _pod(request: web.Request) -> PodRef:
    m = request.match_info
    return PodRef(m["namespace"], m["pod"], m.get("uid", ""))


def _authorized(request: web.Request) -> bool:
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return False
    names = {key: value for rdn in cert.get("subject", ()) for key, value in rdn}
    groups = {v for rdn in cert.get("subject", ()) for k, v in rdn if k == "organizationName"}
    return names.get("commonName") == API_SERVER_USER or ADMIN_GROUP in groups


async def _upgrade(request: web.Request, protocols: tuple[str, ...]) -> web.WebSocketResponse:
    """Accept a WebSocket offering one of `protocols`; anything else is a 400 before
    the upgrade (kubectl then falls back to SPDY)."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise errors.BadRequest("upgrade to WebSocket or SPDY/3.1 required")
    offered = websocket.offered_protocols(request)
    if not any(p in protocols for p in offered):
        raise errors.BadRequest(f"no supported stream protocol among {offered}: want {protocols}")
    ws = web.WebSocketResponse(protocols=protocols, max_msg_size=0, autoping=True)
    await ws.prepare(request)
    return ws


def _spdy_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower().startswith("spdy/3.1")


def _negotiate(request: web.Request, version: str) -> dict[str, str]:
    """The 101 headers accepting `version`, if the client offered it."""
    header = ",".join(request.headers.getall("X-Stream-Protocol-Version", []))
    offered = [v.strip() for v in header.split(",") if v.strip()]
    if version not in offered:
        raise errors.Forbidden(f"unable to upgrade: no supported protocol among {offered}")
    return {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": version}


async def _spdy_command(
    request: web.Request,
    run: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> web.StreamResponse:
    headers = _negotiate(request, spdyexec.PROTOCOL)
    conn = await rawconn.hijack(request, headers)
    session = spdyexec.SpdyCommandSession(
        conn.write, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty
    )

    async def read() -> None:
        try:
            await rawconn.pump(conn, session.feed)
        finally:
            session.connection_lost()

    reader = asyncio.create_task(read())
    try:
        await asyncio.wait_for(session.ready.wait(), spdyexec.STREAM_WAIT)
        status = await run(
            {
                "stdin": session.stdin,
                "stdout": session.sink("stdout"),
                "stderr": session.sink("stderr"),
                "resize": session.resize,
            }
        )
        await session.finish(status)
    except (TimeoutError, ConnectionError, spdy.ProtocolError) as e:
        log.info("SPDY exec ended early: %s", e)
    finally:
        reader.cancel()
        conn.close()
    return conn.response


async def _spdy_port_forward(
    request: web.Request, connect: portforward.Connect
) -> web.StreamResponse:
    conn = await rawconn.hijack(request, _negotiate(request, portforward.SPDY_PROTOCOL))
    session = portforward.PortForwardSession(conn.write, connect)
    try:
        await rawconn.pump(conn, session.feed)
    except (ConnectionError, spdy.ProtocolError) as e:
        log.info("SPDY port-forward ended: %s", e)
    finally:
        await session.close()
        conn.close()
    return conn.response


def build_app(backend: StreamingBackend, *, authorize: bool = True) -> web.Application:
    """The aiohttp application; `authorize=False` skips the client certificate check."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            if authorize and not _authorized(request):
                raise errors.Forbidden("only the API server may use the streaming server")
            return await handler(request)
        except errors.StatusError as e:
            # A refused WebSocket client (the API server's aiohttp) sees the headers
            # but never the body: the message goes in a header too.
            return web.Response(
                status=e.code,
                headers={ERROR_HEADER: " ".join(e.message.split())[:1000]},
                body=orjson.dumps(e.to_status()),
                content_type="application/json",
            )

    async def container_logs(request: web.Request) -> web.StreamResponse:
        pod, container = _pod(request), request.match_info["container"]
        options = log_options(request.query)
        path = await backend.log_path(pod, container, _flag(request.query, "previous"))
        if not path.exists():
            raise errors.NotFound(f'log file of container "{container}" not found')

        async def running() -> bool:
            return await backend.container_running(pod, container)

        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        async for chunk in logs.read_log(path, options, running):
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def remote_command(request: web.Request) -> web.StreamResponse:
        attach = request.path.startswith("/attach/")
        pod, container = _pod(request), request.match_info["container"]
        q = request.query
        cmd = q.getall("command", [])
        tty = _flag(q, "tty")
        stdin = _flag(q, "input", "stdin")
        stdout = _flag(q, "output", "stdout")
        stderr = _flag(q, "error", "stderr") and not tty
        if not attach and not cmd:
            raise errors.BadRequest("you must specify at least 1 command")
        if not (stdin or stdout or stderr):
            raise errors.BadRequest("you must specify at least 1 of stdin, stdout, stderr")

        async def run(streams: dict[str, Any]) -> dict[str, Any]:
            try:
                if attach:
                    await backend.attach(pod, container, tty=tty, **streams)
                    return websocket.exit_status(0, cmd)
                code = await backend.exec(pod, container, cmd, tty=tty, **streams)
                return websocket.exit_status(code, cmd)
            except errors.StatusError as e:
                return e.to_status()
            except Exception as e:  # noqa: BLE001 - reported to the client as its error
                log.exception(
                    "%s failed pod=%s/%s container=%s",
                    request.path.split("/")[1],
                    pod.namespace,
                    pod.name,
                    container,
                )
                return websocket.error_status(str(e))

        if _spdy_upgrade(request):
            return await _spdy_command(request, run, stdin, stdout, stderr, tty)
        ws = await _upgrade(request, websocket.PROTOCOLS)
        session = websocket.ChannelSession(ws, stdin=stdin, tty=tty)
        status = await run(
            {
                "stdin": session.stdin,
                "stdout": session.sink(websocket.STDOUT) if stdout else None,
                "stderr": session.sink(websocket.STDERR) if stderr else None,
                "resize": session.resize,
            }
        )
        await session.finish(status)
        return ws

    async def port_forward(request: web.Request) -> web.StreamResponse:
        pod = _pod(request)
        ports = _ports(request.query)

        async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await backend.port_forward(pod, port)

        if _spdy_upgrade(request):
            return await _spdy_port_forward(request, connect)
        protocols = (portforward.PROTOCOL, websocket.V4) if ports else (portforward.PROTOCOL,)
        ws = await _upgrade(request, protocols)

        if ws.ws_protocol == websocket.V4:
            await portforward.serve_channels(ws, ports, connect)
            return ws
        session = portforward.PortForwardSession(ws.send_bytes, connect)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await session.feed(msg.data)
        except spdy.ProtocolError as e:
            log.info("port-forward protocol error pod=%s/%s: %s", pod.namespace, pod.name, e)
        finally:
            await session.close()
            await ws.close()
        return ws

    app = web.Application(middlewares=[middleware])
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_logs)
    for verb in ("exec", "attach"):
        for tail in ("{container}", "{uid}/{container}"):
            app.router.add_route("*", f"/{verb}/{{namespace}}/{{pod}}/{tail}", remote_command)
    app.router.add_route("*", "/portForward/{namespace}/{pod}", port_forward)
    app.router.add_route("*", "/portForward/{namespace}/{pod}/{uid}", port_forward)
    return app


def ssl_context(cert_file: str, key_file: str, client_ca_file: str) -> ssl.SSLContext:
    """HTTPS with a required client certificate signed by the cluster's client CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(client_ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def start(
    backend: StreamingBackend,
    host: str,
    port: int,
    ssl_ctx: ssl.SSLContext | None,
) -> web.AppRunner:
    """Serve until the returned runner is cleaned up (`await runner.cleanup()`)."""
    app = build_app(backend, authorize=ssl_ctx is not None)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_ctx).start()
    log.info("streaming server listening address=%s port=%d", host, port)
    return runner
