"""The API server process: the aiohttp application, TLS, authentication, and start-up.

One aiohttp application serves everything over HTTPS: the non-resource paths
(`/version`, health, discovery, OpenAPI) and one generic resource handler.
Authentication is x509 client certificates signed by the cluster's client CA
(the certificate's CN is the user, its O fields the groups); health, version
and discovery of the version are open to anonymous clients as upstream's
`system:public-info-viewer` role allows. On start the store is loaded into the
watch cache, the namespaces every cluster has are created, and the stored
CRDs are served (`crds`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from nanokube import KUBERNETES_VERSION, __version__
from nanokube.api import errors
from nanokube.api.kinds import Registry
from nanokube.api.options import WriteOptions
from nanokube.api.resources import builtin_kinds
from nanokube.apiserver import (
    binding,
    codec,
    crds,
    discovery,
    eviction,
    metrics,
    openapi,
    requestinfo,
    streaming,
    tokens,
    tokens_nodecert,
)
from nanokube.apiserver.handlers import ResourceHandler
from nanokube.apiserver.rest import ResourceStore
from nanokube.apiserver.watchcache import WatchCache
from nanokube.storage.store import Store

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
ANONYMOUS_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz"})
# The authenticated user of a request, {"username", "groups"}; absent when anonymous.
USER = web.RequestKey("user", dict)


@dataclass
class APIServerConfig:
    store: Store
    bind_address: str = "127.0.0.1"
    port: int = 6443
    cert_file: str = ""  # serving certificate (PEM)
    key_file: str = ""
    client_ca_file: str = ""  # CA that signs client certificates (x509 authentication)
    service_cidr: str = "10.43.0.0/16"
    # Towards node agents (logs, exec, port-forward): our client certificate, and
    # the CA that signed the agents' serving certificates.
    kubelet_client_cert_file: str = ""
    kubelet_client_key_file: str = ""
    kubelet_ca_file: str = ""
    # The join token agents authenticate with (bearer), and who signs their
    # certificates (`/v1-nanokube/node-cert`); None: client certificates only.
    token: tokens.JoinToken | None = None
    node_certs: tokens_nodecert.NodeCertIssuer | None = None


@dataclass
class APIServer:
    """The parts of a running API server, for the in-process client and later wiring."""

    config: APIServerConfig
    registry: Registry
    cache: WatchCache
    resources: ResourceStore
    handler: ResourceHandler
    discovery: discovery.Discovery
    app: web.Application
    # Where `metrics.k8s.io` figures come from (nodes register their sources).
    metrics_sources: metrics.MetricsSources
    metrics_api: metrics.MetricsAPI
    # Serves the custom resources of the stored CRDs (started by `start`).
    crds: crds.CRDController

    def subresource_creators(self) -> dict[tuple[str, str], Any]:
        """POST subresources as plain functions, for the in-process client."""
        return {("pods", "binding"): binding.bind, ("pods", "eviction"): eviction.evict}


def version_info() -> dict[str, Any]:
    major, minor, _ = KUBERNETES_VERSION.lstrip("v").split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"{KUBERNETES_VERSION}-nanokube",
        "gitCommit": __version__,
        "gitTreeState": "clean",
        "buildDate": "2026-11-25T00:00:00Z",
        "goVersion": "python",
        "compiler": "cpython",
        "platform": "linux/amd64",
    }


def _user_of(request: web.Request) -> dict[str, Any] | None:
    transport = request.transport
    if transport is None:
        return None
    cert = transport.get_extra_info("peercert")
    if not cert:
        return None
    user = ""
    groups = []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return {"username": user, "groups": [*groups, "system:authenticated"]}


def build_app(config: APIServerConfig) -> APIServer:
    registry = Registry(builtin_kinds())
    cache = WatchCache(config.store)
    resources = ResourceStore(config.store, cache, config.service_cidr)
    resource_handler = ResourceHandler(registry, resources)
    binding.register(resource_handler)
    eviction.register(resource_handler)
    streaming.register(
        resource_handler,
        streaming.node_dialer(
            config.kubelet_ca_file, config.kubelet_client_cert_file, config.kubelet_client_key_file
        )
        if config.kubelet_client_cert_file
        else streaming.NodeDialer(),
    )
    disco = discovery.Discovery(registry)
    crd_controller = crds.CRDController(registry, resources, disco)
    version_body = codec.json_response(version_info()).body
    tls = bool(config.cert_file)
    user_of = (
        tokens.with_bearer_tokens(_user_of, tokens.TokenAuthenticator(config.token))
        if config.token is not None
        else _user_of
    )
    anonymous = ANONYMOUS_PATHS | tokens_nodecert.ANONYMOUS_PATHS

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            if tls:
                user = user_of(request)
                if user is None and request.path not in anonymous:
                    raise errors.Unauthorized("Unauthorized")
                if user is not None:
                    request[USER] = user
            return await handler(request)
        except errors.StatusError as e:
            return codec.status_response(e)
        except web.HTTPException:
            raise
        except Exception:  # noqa: BLE001 - every failure must still be a Status
            log.exception("request failed method=%s path=%s", request.method, request.path)
            return codec.status_response(errors.StatusError("Internal error occurred"))

    async def health(request: web.Request) -> web.Response:
        if not cache.ready.is_set():
            return web.Response(status=500, text="[-]watch-cache not ready\n")
        if "verbose" in request.query:
            return web.Response(
                text=f"[+]ping ok\n[+]etcd ok\n[+]watch-cache ok\n{request.path[1:]} check passed\n"
            )
        return web.Response(text="ok")

    async def version(request: web.Request) -> web.Response:
        return web.Response(body=version_body, content_type="application/json")

    async def api_root(request: web.Request) -> web.Response:
        core = request.path.rstrip("/") == "/api"
        aggregated = discovery.wants_aggregated(request.headers.get("Accept", ""))
        if aggregated:
            return web.Response(body=disco.aggregated(core), headers={"Content-Type": aggregated})
        body = disco.api_versions() if core else disco.api_groups()
        return web.Response(body=body, content_type="application/json")

    async def openapi_v2(request: web.Request) -> web.Response:
        raise errors.NotFound("the server could not find the requested resource")

    async def openapi_v3(request: web.Request) -> web.Response:
        path = request.match_info.get("path", "")
        body = openapi.v3_document(registry, path) if path else openapi.v3_index(registry)
        if body is None:
            raise errors.NotFound("the server could not find the requested resource")
        return web.Response(body=body, content_type="application/json")

    async def resources_route(request: web.Request) -> web.StreamResponse:
        info = requestinfo.parse(request.path, registry)
        if info is None:
            parts = [p for p in request.path.split("/") if p]
            if len(parts) == 2 and parts[0] == "apis":
                body = disco.api_group(parts[1])
                if body is not None:
                    return web.Response(body=body, content_type="application/json")
            raise errors.NotFound("the server could not find the requested resource")
        if info.kind is None:
            body = disco.resource_list(info.group, info.version)
            if body is None:
                raise errors.NotFound("the server could not find the requested resource")
            return web.Response(body=body, content_type="application/json")
        if info.kind is crds.CRD and request.method == "DELETE" and info.name:
            await crd_controller.before_delete(info.name, "dryRun" in request.query)
        return await resource_handler.handle(request, info)

    app = web.Application(middlewares=[middleware], client_max_size=16 * 1024 * 1024)
    app.on_cleanup.append(crd_controller.on_cleanup)
    for path in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(path, health)
        app.router.add_get(path + "/{check:.*}", health)
    app.router.add_get("/version", version)
    app.router.add_get("/api", api_root)
    app.router.add_get("/apis", api_root)
    app.router.add_get("/openapi/v2", openapi_v2)
    app.router.add_get("/openapi/v3", openapi_v3)
    app.router.add_get("/openapi/v3/{path:.*}", openapi_v3)
    metrics_sources = metrics.MetricsSources()
    metrics_api = metrics.MetricsAPI(resources, metrics_sources)
    metrics.register(app, metrics_api)
    if config.node_certs is not None:
        tokens_nodecert.register(app, config.node_certs)
    app.router.add_route("*", "/{tail:.*}", resources_route)
    return APIServer(
        config,
        registry,
        cache,
        resources,
        resource_handler,
        disco,
        app,
        metrics_sources,
        metrics_api,
        crd_controller,
    )


def ssl_context(config: APIServerConfig) -> ssl.SSLContext | None:
    if not config.cert_file:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(config.cert_file, config.key_file)
    if config.client_ca_file:
        ctx.load_verify_locations(config.client_ca_file)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    # kubectl offers h2; aiohttp speaks HTTP/1.1 only, so only that is offered back.
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def ensure_system_namespaces(resources: ResourceStore, registry: Registry) -> None:
    ns_kind = registry.by_resource("", "v1", "namespaces")
    if ns_kind is None:
        return
    for name in SYSTEM_NAMESPACES:
        if resources.cache.get(ns_kind.key("", name)) is None:
            try:
                await resources.create(
                    ns_kind, "", {"metadata": {"name": name}}, WriteOptions(), []
                )
            except errors.AlreadyExists:
                pass


async def start(config: APIServerConfig) -> tuple[APIServer, web.AppRunner]:
    server = build_app(config)
    await server.cache.start()
    await ensure_system_namespaces(server.resources, server.registry)
    await server.crds.start()
    # handler_cancellation: a watch whose client went away ends at once, not at
    # its next write, so its watcher does not linger in the cache's fan-out.
    runner = web.AppRunner(
        server.app, access_log=None, handle_signals=False, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(
        runner, config.bind_address, config.port, ssl_context=ssl_context(config), backlog=1024
    )
    try:
        await site.start()
    except OSError:
        await server.cache.stop()
        await runner.cleanup()
        raise
    log.info("API server listening address=%s port=%d", config.bind_address, config.port)
    return server, runner


async def run_apiserver(
    config: APIServerConfig, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Serve until `stop` is set; `ready` is set once listening."""
    server, runner = await start(config)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await server.cache.stop()
        await runner.cleanup()
