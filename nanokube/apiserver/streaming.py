"""The streaming subresources of pods: `log`, `exec`, `attach` and `portforward`.

As upstream's API server does (`pkg/registry/core/pod/strategy.go`
`LogLocation`/`streamLocation`, and the upgrade-aware proxy), these handlers
look the pod up, check that the request makes sense for it (container name,
phase, container state) and then proxy to the node agent that runs the pod,
at the kubelet's own paths (`/containerLogs/…`, `/exec/…`, `/attach/…`,
`/portForward/…`). The node's address is its `InternalIP` in
`status.addresses` and `status.daemonEndpoints.kubeletEndpoint.Port`; the
connection is HTTPS with the API server's kubelet-client certificate (see
`NodeDialer`).

- Logs are a plain GET whose chunked `text/plain` body is copied through as
  it arrives (`follow` keeps it open).
- exec, attach and port-forward are WebSocket upgrades. The handler first
  opens the WebSocket to the agent with the subprotocols kubectl offered, then
  accepts kubectl's upgrade with the one the agent chose, and relays messages
  unchanged both ways: the channel protocol of exec (`v5.channel.k8s.io`) and
  the SPDY-in-WebSocket tunnel of port-forward are both carried end to end and
  terminated by the agent (upstream translates port-forward to SPDY towards
  the kubelet; the agent speaking the tunnel itself makes the relay a plain
  copy). The agent's Close code is passed on, so kubectl sees 1000 at the end.
- kubectl's SPDY fallback (``Upgrade: SPDY/3.1``, after any WebSocket
  failure) is proxied as upstream proxies every upgrade: the API server sends
  the same upgrade to the agent and, once both sides said 101, splices the two
  connections byte for byte.

Query parameters are renamed as upstream does: kubectl's `stdin`, `stdout`,
`stderr` become the kubelet's `input`, `output`, `error`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

from nanokube.api import errors
from nanokube.api.resources import builtin_kinds
from nanokube.apiserver.requestinfo import RequestInfo

if TYPE_CHECKING:
    from nanokube.apiserver.handlers import ResourceHandler

log = logging.getLogger(__name__)

Obj = dict[str, Any]

_POD = next(k for k in builtin_kinds() if k.group == "" and k.kind == "Pod")
_NODE = next(k for k in builtin_kinds() if k.group == "" and k.kind == "Node")
DEFAULT_KUBELET_PORT = 10250
AGENT_ERROR_HEADER = "X-Nanokube-Error"  # the agent's message when it refuses an upgrade
CONNECT_TIMEOUT = 10.0
_WRITE_BUFFER_LIMIT = (
    1 << 20
)  # bytes queued towards a client before the splice waits  # seconds to reach a node agent
_LOG_PARAMS = (
    "follow",
    "previous",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "limitBytes",
)
_STREAM_PARAMS = {"stdin": "input", "stdout": "output", "stderr": "error", "tty": "tty"}
_IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff")


@dataclass
class NodeDialer:
    """How the API server reaches node agents.

    `ssl_context` carries the API server's kubelet-client certificate and the
    CA that signs agents' serving certificates; None dials plain HTTP (tests).
    Host names are not checked, only the CA's signature: nodes are dialled by
    IP, and upstream verifies no more than that either.
    """

    ssl_context: ssl.SSLContext | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    def session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self.ssl_context or False, force_close=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        return aiohttp.ClientSession(connector=connector, timeout=timeout)


def node_dialer(ca_file: str, cert_file: str, key_file: str) -> NodeDialer:
    """A dialer presenting `cert_file` and trusting agents whose certificate `ca_file` signed."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.check_hostname = False
    ctx.load_cert_chain(cert_file, key_file)
    ctx.set_alpn_protocols(["http/1.1"])
    return NodeDialer(ctx)


# -- checks on the pod ---------------------------------------------------------


def _names(containers: list[Obj] | None) -> list[str]:
    return [c.get("name", "") for c in containers or []]


def resolve_container(pod: Obj, container: str) -> str:
    """Upstream's `validateContainer`: the named container, or the only one."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    if not container:
        containers = _names(spec.get("containers"))
        if len(containers) == 1:
            return containers[0]
        if not containers:
            raise errors.BadRequest(f"pod {name} does not have a container")
        message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
        if init := _names(spec.get("initContainers")):
            message += f" or one of the init containers: [{' '.join(init)}]"
        if ephemeral := _names(spec.get("ephemeralContainers")):
            message += f" or one of the ephemeral containers: [{' '.join(ephemeral)}]"
        raise errors.BadRequest(message)
    every = (
        _names(spec.get("containers"))
        + _names(spec.get("initContainers"))
        + _names(spec.get("ephemeralContainers"))
    )
    if container not in every:
        raise errors.BadRequest(f"container {container} is not valid for pod {name}")
    return container


def _container_status(pod: Obj, container: str) -> Obj | None:
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            if cs.get("name") == container:
                return cs
    return None


def check_log_status(pod: Obj, container: str, previous: bool) -> None:
    """The kubelet's `validateContainerLogStatus`, answered from the pod's status."""
    name = pod["metadata"]["name"]
    cs = _container_status(pod, container)
    if cs is None:
        raise errors.BadRequest(f'container "{container}" in pod "{name}" is not available')
    if previous:
        if not (cs.get("lastState") or {}).get("terminated"):
            raise errors.BadRequest(
                f'previous terminated container "{container}" in pod "{name}" not found'
            )
        return
    state = cs.get("state") or {}
    if state.get("running") or state.get("terminated"):
        return
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason") or "ContainerCreating"
    if reason in _IMAGE_PULL_REASONS:
        reason = "trying and failing to pull image"
    if (cs.get("lastState") or {}).get("terminated"):
        return  # a restarting container still shows its last run's log
    raise errors.BadRequest(
        f'container "{container}" in pod "{name}" is waiting to start: {reason}'
    )


def check_running(pod: Obj, container: str | None) -> None:
    """exec, attach and port-forward need a Running pod (and a running container)."""
    name = pod["metadata"]["name"]
    phase = (pod.get("status") or {}).get("phase", "Pending")
    if phase != "Running":
        raise errors.BadRequest(f"pod {name} is not running: current phase is {phase}")
    if container is None:
        return
    cs = _container_status(pod, container)
    if cs is not None and not (cs.get("state") or {}).get("running"):
        raise errors.BadRequest(f"container {container} is not running in pod {name}")


# -- the node ------------------------------------------------------------------


async def node_location(handler: ResourceHandler, dialer: NodeDialer, pod: Obj) -> str:
    """`scheme://address:port` of the agent of the node the pod is bound to."""
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.BadRequest(f"pod {pod['metadata']['name']} does not have a host assigned")
    node = await handler.store.get(_NODE, "", node_name)
    status = node.get("status") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    host = next(
        (addresses[t] for t in ("InternalIP", "ExternalIP", "Hostname") if addresses.get(t)), None
    )
    if not host:
        raise errors.StatusError(f"node {node_name} has no address to reach its agent")
    endpoint = (status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}
    port = int(endpoint.get("Port") or DEFAULT_KUBELET_PORT)
    host = f"[{host}]" if ":" in host else host
    return f"{dialer.scheme}://{host}:{port}"


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(p, safe="") for p in parts)


# -- proxying ------------------------------------------------------------------


async def _proxy_logs(request: web.Request, dialer: NodeDialer, url: str) -> web.StreamResponse:
    params = [(k, v) for k in _LOG_PARAMS for v in request.query.getall(k, [])]
    async with dialer.session() as session:
        try:
            upstream = await session.get(url, params=params)
        except aiohttp.ClientError as e:
            raise errors.StatusError(f"error dialing the node agent: {e}") from None
        async with upstream:
            resp = web.StreamResponse(status=upstream.status)
            resp.content_type = upstream.headers.get("Content-Type", "text/plain").split(";")[0]
            if upstream.status == 200:
                resp.enable_chunked_encoding()
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp


def _offered(request: web.Request) -> list[str]:
    header = ",".join(request.headers.getall("Sec-WebSocket-Protocol", []))
    return [p.strip() for p in header.split(",") if p.strip()]


async def _relay(src: Any, dst: Any) -> None:
    async for msg in src:
        if msg.type == WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        elif msg.type == WSMsgType.TEXT:
            await dst.send_str(msg.data)


async def _proxy_upgrade(
    request: web.Request, dialer: NodeDialer, url: str, params: list[tuple[str, str]]
) -> web.StreamResponse:
    upgrade = request.headers.get("Upgrade", "").lower()
    if upgrade.startswith("spdy/3.1"):
        return await _proxy_spdy(request, dialer, url, params)
    if upgrade != "websocket":
        raise errors.BadRequest(
            "unable to upgrade connection: only WebSocket and SPDY/3.1 streams are supported"
        )
    offered = _offered(request)
    async with dialer.session() as session:
        try:
            upstream = await session.ws_connect(
                url, params=params, protocols=offered, max_msg_size=0, autoping=True
            )
        except aiohttp.WSServerHandshakeError as e:
            error_class = errors.BadRequest if 400 <= e.status < 500 else errors.StatusError
            message = e.headers.get(AGENT_ERROR_HEADER) if e.headers else None
            message = message or f"status {e.status}"
            raise error_class(f"unable to upgrade connection: {message}") from None
        except aiohttp.ClientError as e:
            raise errors.StatusError(f"error dialing the node agent: {e}") from None
        async with upstream:
            chosen = upstream.protocol
            ws = web.WebSocketResponse(
                protocols=(chosen,) if chosen else (), max_msg_size=0, autoping=True
            )
            await ws.prepare(request)
            to_agent = asyncio.create_task(_relay(ws, upstream))
            to_client = asyncio.create_task(_relay(upstream, ws))
            try:
                await asyncio.wait((to_agent, to_client), return_when=asyncio.FIRST_COMPLETED)
            finally:
                if to_client.done():
                    # The agent ended the stream: pass its close code on to kubectl.
                    await ws.close(code=upstream.close_code or 1000)
                else:
                    await upstream.close()
                    await ws.close()
                for task in (to_agent, to_client):
                    task.cancel()
                await asyncio.gather(to_agent, to_client, return_exceptions=True)
            return ws


class _Feed:
    """aiohttp's parser interface on an upgraded connection: bytes into a StreamReader."""

    def __init__(self) -> None:
        self.reader = asyncio.StreamReader()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()


async def _hijack(
    request: web.Request, headers: dict[str, str]
) -> tuple[web.StreamResponse, asyncio.StreamReader]:
    """Answer 101 and take the connection over, with the hooks aiohttp's own WebSocket
    support uses (it has no public API for other upgrades): every later byte of the
    connection goes to the returned reader; writes go to `request.transport`."""
    resp = web.StreamResponse(status=101, headers=headers)
    await resp.prepare(request)
    feed = _Feed()
    request.protocol.set_parser(feed)  # type: ignore[arg-type]
    request.protocol.keep_alive(False)
    return resp, feed.reader


async def _agent_upgrade(
    dialer: NodeDialer, url: str, params: list[tuple[str, str]], versions: list[str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """POST the SPDY upgrade to the agent; its reader, writer and chosen version."""
    target = URL(url).with_query(params)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port, ssl=dialer.ssl_context),
            CONNECT_TIMEOUT,
        )
    except (OSError, TimeoutError) as e:
        raise errors.StatusError(f"error dialing the node agent: {e}") from None
    try:
        head = [
            f"POST {target.raw_path_qs} HTTP/1.1",
            f"Host: {target.raw_host}:{target.port}",
            "Connection: Upgrade",
            "Upgrade: SPDY/3.1",
            *(f"X-Stream-Protocol-Version: {v}" for v in versions),
            "Content-Length: 0",
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        code = int(status_line.split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)
        }
        if code != 101:
            message = headers.get(AGENT_ERROR_HEADER.lower()) or f"status {code}"
            error_class = errors.BadRequest if 400 <= code < 500 else errors.StatusError
            raise error_class(f"unable to upgrade connection: {message}")
    except BaseException:
        writer.close()
        raise
    return reader, writer, headers.get("x-stream-protocol-version", "")


async def _proxy_spdy(
    request: web.Request, dialer: NodeDialer, url: str, params: list[tuple[str, str]]
) -> web.StreamResponse:
    """kubectl's plain SPDY (its fallback): the upgraded connections spliced byte for byte."""
    header = ",".join(request.headers.getall("X-Stream-Protocol-Version", []))
    versions = [v.strip() for v in header.split(",") if v.strip()]
    agent_reader, agent_writer, chosen = await _agent_upgrade(dialer, url, params, versions)
    try:
        resp, client_reader = await _hijack(
            request,
            {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": chosen},
        )
        transport = request.transport
        assert transport is not None

        async def to_client() -> None:
            while data := await agent_reader.read(64 * 1024):
                transport.write(data)
                while transport.get_write_buffer_size() > _WRITE_BUFFER_LIMIT:
                    if transport.is_closing():
                        return
                    await asyncio.sleep(0.005)  # a slow client: let the socket drain

        async def to_agent() -> None:
            while data := await client_reader.read(64 * 1024):
                agent_writer.write(data)
                await agent_writer.drain()

        tasks = (asyncio.create_task(to_client()), asyncio.create_task(to_agent()))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            transport.close()
        return resp
    finally:
        agent_writer.close()


def register(handler: ResourceHandler, dialer: NodeDialer) -> None:
    """Serve `pods/{log,exec,attach,portforward}` from `handler`, proxying through `dialer`."""

    async def pod_of(request: web.Request, info: RequestInfo, methods: tuple[str, ...]) -> Obj:
        if request.method not in methods:
            raise errors.MethodNotAllowed(
                "the server does not allow this method on the requested resource"
            )
        return await handler.store.get(_POD, info.namespace, info.name)

    async def pod_log(request: web.Request, info: RequestInfo) -> web.StreamResponse:
        pod = await pod_of(request, info, ("GET",))
        q = request.query
        container = resolve_container(pod, q.get("container", ""))
        if q.get("sinceSeconds") and q.get("sinceTime"):
            raise errors.BadRequest("at most one of sinceTime or sinceSeconds may be specified")
        for name in ("tailLines", "sinceSeconds", "limitBytes"):
            value = q.get(name)
            if value is not None and (
                not value.lstrip("-").isdigit() or int(value) < (0 if name == "tailLines" else 1)
            ):
                raise errors.BadRequest(f"invalid {name}: {value!r}")
        if not (pod.get("spec") or {}).get("nodeName"):
            return web.Response(text="", content_type="text/plain")  # upstream: no host, no log
        check_log_status(pod, container, q.get("previous", "") in ("true", "1"))
        base = await node_location(handler, dialer, pod)
        url = base + _path("containerLogs", info.namespace, info.name, container)
        return await _proxy_logs(request, dialer, url)

    def remote_command(verb: str) -> Any:
        async def handle(request: web.Request, info: RequestInfo) -> web.StreamResponse:
            pod = await pod_of(request, info, ("GET", "POST"))
            q = request.query
            container = resolve_container(pod, q.get("container", ""))
            check_running(pod, container)
            params = [("command", c) for c in q.getall("command", [])]
            if verb == "exec" and not params:
                raise errors.BadRequest("you must specify at least 1 command")
            for ours, theirs in _STREAM_PARAMS.items():
                if q.get(ours, "") in ("true", "1"):
                    params.append((theirs, "1"))
            base = await node_location(handler, dialer, pod)
            uid = pod["metadata"].get("uid", "")
            url = base + _path(verb, info.namespace, info.name, uid, container)
            return await _proxy_upgrade(request, dialer, url, params)

        return handle

    async def port_forward(request: web.Request, info: RequestInfo) -> web.StreamResponse:
        pod = await pod_of(request, info, ("GET", "POST"))
        check_running(pod, None)
        base = await node_location(handler, dialer, pod)
        uid = pod["metadata"].get("uid", "")
        url = base + _path("portForward", info.namespace, info.name, uid)
        params = [("ports", p) for p in request.query.getall("ports", [])]
        return await _proxy_upgrade(request, dialer, url, params)

    handler.subresource_handlers[("pods", "log")] = pod_log
    handler.subresource_handlers[("pods", "exec")] = remote_command("exec")
    handler.subresource_handlers[("pods", "attach")] = remote_command("attach")
    handler.subresource_handlers[("pods", "portforward")] = port_forward
