"""The HTTPS client: the same `Client` semantics over the Kubernetes REST API.

Node agents on other machines, and controllers in another process, use this.
One aiohttp session per client keeps a pool of keep-alive connections; bodies
are JSON through orjson. TLS trusts the cluster CA and presents the client
certificate (x509 authentication, as the kubeconfig that `nanokube server`
writes); a bearer token may be sent instead or as well.

Failures come back as the `nanokube.api.errors` the in-process client raises:
the server's `Status` body is mapped back to its class by `reason` (then by
HTTP code), with its name, causes and retry-after. A watch is a chunked stream
of JSON lines; an `ERROR` event (or an HTTP 410) raises `errors.Expired` so
the caller relists.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import yaml

from nanokube.api import errors
from nanokube.api.errors import Cause
from nanokube.api.kinds import Kind
from nanokube.client.interface import MERGE_PATCH, Obj

log = logging.getLogger(__name__)

_ERROR_CLASSES: dict[str, type[errors.StatusError]] = {
    cls.reason: cls
    for cls in (
        errors.BadRequest,
        errors.Unauthorized,
        errors.Forbidden,
        errors.NotFound,
        errors.MethodNotAllowed,
        errors.NotAcceptable,
        errors.AlreadyExists,
        errors.Conflict,
        errors.Expired,
        errors.UnsupportedMediaType,
        errors.Invalid,
        errors.TooManyRequests,
        errors.Timeout,
    )
}
# When a body is not a Status (a proxy, a crash): the class by code alone.
_BY_CODE: dict[int, type[errors.StatusError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    406: errors.NotAcceptable,
    409: errors.Conflict,
    410: errors.Expired,
    415: errors.UnsupportedMediaType,
    422: errors.Invalid,
    429: errors.TooManyRequests,
    504: errors.Timeout,
}
_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10)
# A watch lasts as long as the server keeps it (its timeoutSeconds): no read timeout.
_WATCH_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=None)


def error_from_status(code: int, body: Any) -> errors.StatusError:
    """The `StatusError` a `Status` body (or a bare HTTP code) stands for."""
    if not isinstance(body, dict) or body.get("kind") != "Status":
        cls = _BY_CODE.get(code, errors.StatusError)
        text = body if isinstance(body, str) and body else f"the server responded with HTTP {code}"
        return cls(text)
    cls = _ERROR_CLASSES.get(body.get("reason", ""), None) or _BY_CODE.get(
        int(body.get("code") or code), errors.StatusError
    )
    details = body.get("details") or {}
    causes = []
    for c in details.get("causes") or []:
        field, message = c.get("field", ""), c.get("message", "")
        prefix = f"{field}: "
        if field and message.startswith(prefix):
            message = message[len(prefix) :]  # Cause.to_dict put it there
        causes.append(Cause(field, message, c.get("reason", "FieldValueInvalid")))
    return cls(
        body.get("message") or "",
        kind=details.get("kind", ""),
        group=details.get("group", ""),
        name=details.get("name", ""),
        causes=causes,
        retry_after=int(details.get("retryAfterSeconds") or 0),
    )


def tls_context(
    ca_file: str = "",
    cert_file: str = "",
    key_file: str = "",
    *,
    ca_data: bytes = b"",
    cert_data: bytes = b"",
    key_data: bytes = b"",
) -> ssl.SSLContext:
    """A client TLS context: trust the cluster CA, present the client certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file or ca_data:
        ctx.load_verify_locations(cafile=ca_file or None, cadata=ca_data.decode() or None)
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file or None)
    elif cert_data:
        # ssl loads a chain only from files: a private temporary directory, removed at once.
        with tempfile.TemporaryDirectory(prefix="nanokube-client-") as tmp:
            cert_path, key_path = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
            for path, data in ((cert_path, cert_data), (key_path, key_data or cert_data)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            ctx.load_cert_chain(cert_path, key_path)
    return ctx


class HTTPClient:
    """The `Client` over HTTP(S). Create it inside the event loop; `close()` when done."""

    def __init__(
        self,
        base_url: str,
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
        token: str | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        pool_size: int = 100,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if ssl_context is None and self.base_url.startswith("https://"):
            ssl_context = tls_context(ca_file, cert_file, key_file)
        self._ssl = ssl_context
        self._headers = {"Accept": "application/json", "User-Agent": "nanokube-client"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str], context: str = "") -> HTTPClient:
        """A client for a kubeconfig's current (or named) context: server, CA, cert, token."""
        config = yaml.safe_load(Path(path).read_text()) or {}
        context_name = context or config.get("current-context", "")
        ctx = _named(config, "contexts", context_name, "context")
        cluster = _named(config, "clusters", ctx.get("cluster", ""), "cluster")
        user = _named(config, "users", ctx.get("user", ""), "user")
        base = Path(path).parent

        def data(section: dict[str, Any], key: str) -> bytes:
            if section.get(f"{key}-data"):
                return base64.b64decode(section[f"{key}-data"])
            if section.get(key):
                return (base / section[key]).read_bytes()
            return b""

        server = cluster.get("server", "")
        ssl_context = None
        if server.startswith("https://"):
            ssl_context = tls_context(
                ca_data=data(cluster, "certificate-authority"),
                cert_data=data(user, "client-certificate"),
                key_data=data(user, "client-key"),
            )
        return cls(server, token=user.get("token") or None, ssl_context=ssl_context)

    async def __aenter__(self) -> HTTPClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size, ssl=self._ssl if self._ssl is not None else False
            )
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, timeout=_REQUEST_TIMEOUT
            )
        return self._session

    def _path(self, kind: Kind, namespace: str = "", name: str = "", subresource: str = "") -> str:
        root = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
        parts = [self.base_url + root]
        if kind.namespaced and namespace:
            parts += ["namespaces", quote(namespace, safe="")]
        parts.append(kind.plural)
        if name:
            parts.append(quote(name, safe=""))
        if subresource:
            parts.append(subresource)
        return "/".join(parts)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else None
        async with self._http().request(
            method, url, data=data, params=params, headers=headers
        ) as resp:
            raw = await resp.read()
            for warning in resp.headers.getall("Warning", []):
                log.info("server warning method=%s url=%s warning=%s", method, url, warning)
            parsed = _decode(raw)
            if resp.status >= 400:
                raise error_from_status(resp.status, parsed)
            if not isinstance(parsed, dict):
                raise errors.StatusError(f"unexpected response from {method} {url}")
            return parsed

    async def get(self, kind: Kind, name: str, namespace: str = "") -> Obj:
        return await self._request("GET", self._path(kind, namespace, name))

    async def list(
        self,
        kind: Kind,
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
    ) -> Obj:
        params = _params(
            labelSelector=label_selector,
            fieldSelector=field_selector,
            limit=str(limit) if limit else "",
            resourceVersion=resource_version,
        )
        if continue_token:
            params["continue"] = continue_token
        return await self._request("GET", self._path(kind, namespace), params=params)

    async def create(
        self, kind: Kind, obj: Obj, namespace: str = "", *, dry_run: bool = False
    ) -> Obj:
        ns = namespace or (obj.get("metadata") or {}).get("namespace") or ""
        if kind.namespaced and not ns:
            raise errors.NotFound("the server could not find the requested resource")
        params = {"dryRun": "All"} if dry_run else None
        return await self._request("POST", self._path(kind, ns), body=obj, params=params)

    async def update(self, kind: Kind, obj: Obj, *, subresource: str = "") -> Obj:
        md = obj.get("metadata") or {}
        if not md.get("name"):
            raise errors.BadRequest("name is required for an update")
        url = self._path(kind, md.get("namespace") or "", md["name"], subresource)
        return await self._request("PUT", url, body=obj)

    async def patch(
        self,
        kind: Kind,
        name: str,
        patch: Any,
        namespace: str = "",
        *,
        patch_type: str = MERGE_PATCH,
        subresource: str = "",
    ) -> Obj:
        url = self._path(kind, namespace, name, subresource)
        return await self._request("PATCH", url, body=patch, content_type=patch_type)

    async def delete(
        self,
        kind: Kind,
        name: str,
        namespace: str = "",
        *,
        propagation_policy: str = "",
        grace_period_seconds: int | None = None,
        preconditions: Obj | None = None,
    ) -> Obj:
        options: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            options["preconditions"] = preconditions
        return await self._request("DELETE", self._path(kind, namespace, name), body=options)

    async def create_subresource(
        self, kind: Kind, name: str, namespace: str, subresource: str, body: Obj
    ) -> Obj:
        return await self._request(
            "POST", self._path(kind, namespace, name, subresource), body=body
        )

    async def watch(
        self,
        kind: Kind,
        namespace: str = "",
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[tuple[str, Obj]]:
        params = _params(
            watch="true",
            allowWatchBookmarks="true",
            resourceVersion=resource_version,
            labelSelector=label_selector,
            fieldSelector=field_selector,
            timeoutSeconds=str(timeout_seconds) if timeout_seconds is not None else "",
        )
        async with self._http().get(
            self._path(kind, namespace), params=params, timeout=_WATCH_TIMEOUT
        ) as resp:
            if resp.status >= 400:
                raise error_from_status(resp.status, _decode(await resp.read()))
            async for line in _lines(resp.content):
                event = orjson.loads(line)
                etype, obj = event.get("type", ""), event.get("object") or {}
                if etype == "ERROR":
                    raise error_from_status(int(obj.get("code") or 500), obj)
                yield etype, obj


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Newline-separated lines of any length (StreamReader.readline caps them at 128 KiB)."""
    buf = b""
    async for chunk in stream.iter_any():
        buf += chunk
        if b"\n" not in chunk:
            continue
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if buf.strip():
        yield buf


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace").strip()


def _params(**values: str) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


def _named(config: dict[str, Any], section: str, name: str, field: str) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if entry.get("name") == name:
            value: dict[str, Any] = entry.get(field) or {}
            return value
    raise ValueError(f"kubeconfig has no {section[:-1]} named {name!r}")
