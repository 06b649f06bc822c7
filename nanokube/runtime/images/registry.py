"""A client of the OCI distribution API (``/v2/``), enough to pull.

Authentication follows the registry's ``WWW-Authenticate`` challenge, as docker and
containerd do: a request goes out anonymously (or with a token cached for its scope);
on 401 with ``Bearer realm=...,service=...,scope=...`` a token is fetched from the realm
(with basic credentials when the host has some, from ``imagePullSecrets``) and the
request retried; on 401 with ``Basic`` it is retried with the credentials. HTTPS
always, except for loopback registries and hosts the agent lists as insecure.

Failures raise `RegistryError` carrying the registry's own words (``MANIFEST_UNKNOWN:
manifest unknown``) and whether it means "does not exist".
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass

import aiohttp

from nanokube.runtime.images.manifest import ACCEPT
from nanokube.runtime.images.reference import DOCKER_HUB, Reference, is_loopback

log = logging.getLogger(__name__)

Credentials = Mapping[str, tuple[str, str]]
"""Registry host (as written in image names: ``docker.io``, ``quay.io``,
``localhost:5000``) -> (username, password)."""


class RegistryError(Exception):
    def __init__(self, message: str, *, not_found: bool = False, status: int = 0) -> None:
        super().__init__(message)
        self.not_found = not_found
        self.status = status


@dataclass
class _Token:
    value: str
    expires: float


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://auth",service="reg",scope="repository:a:pull"`` ->
    (``bearer``, {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip(" ,").lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            end = len(rest) if end < 0 else end
            params[key] = rest[i + 1 : end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
        i += 1 if i < len(rest) and rest[i] == "," else 0
    return scheme.lower(), params


def _registry_message(body: bytes) -> str:
    """``CODE: message`` from a distribution error body, else the body's start."""
    try:
        errors = json.loads(body).get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors]
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    return body[:200].decode(errors="replace").strip()


class RegistryClient:
    """One per image store; tokens are cached per (host, scope, user) until they expire."""

    def __init__(self, insecure_registries: Collection[str] = ()) -> None:
        self.insecure = frozenset(insecure_registries)
        self._session: aiohttp.ClientSession | None = None
        self._tokens: dict[tuple[str, str, str], _Token] = {}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60),
                headers={"User-Agent": "nanokube"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def base_url(self, ref: Reference) -> str:
        host = ref.api_host
        plain = is_loopback(host) or ref.domain in self.insecure or host in self.insecure
        return f"{'http' if plain else 'https'}://{host}/v2/{ref.path}"

    async def manifest(
        self, ref: Reference, reference: str, auth: Credentials
    ) -> tuple[bytes, str, str]:
        """GET a manifest or index by tag or digest: (body, content type, digest header)."""
        url = f"{self.base_url(ref)}/manifests/{reference}"
        async with self._request(ref, url, auth, {"Accept": ACCEPT}) as resp:
            body = await resp.read()
            return (
                body,
                resp.headers.get("Content-Type", ""),
                resp.headers.get("Docker-Content-Digest", ""),
            )

    async def blob(self, ref: Reference, digest: str, auth: Credentials) -> AsyncIterator[bytes]:
        """Stream a blob (following the registry's redirect to its storage)."""
        url = f"{self.base_url(ref)}/blobs/{digest}"
        async with self._request(ref, url, auth, {}) as resp:
            try:
                async for chunk in resp.content.iter_chunked(1 << 20):
                    yield chunk
            except aiohttp.ClientError as e:
                raise RegistryError(f"failed to read blob {digest}: {e}") from None
            except TimeoutError:
                raise RegistryError(f"failed to read blob {digest}: timed out") from None

    def _request(
        self, ref: Reference, url: str, auth: Credentials, headers: dict[str, str]
    ) -> _Response:
        return _Response(self, ref, url, auth, headers)

    async def _send(
        self, ref: Reference, url: str, auth: Credentials, headers: dict[str, str]
    ) -> aiohttp.ClientResponse:
        creds = _credentials(auth, ref)
        scope = f"repository:{ref.path}:pull"
        user = creds[0] if creds else ""
        cached = self._tokens.get((ref.api_host, scope, user))
        hdrs = dict(headers)
        if cached and cached.expires > time.monotonic():
            hdrs["Authorization"] = f"Bearer {cached.value}"
        try:
            resp = await self._http().get(url, headers=hdrs)
            if resp.status != 401:
                return await _check(resp)
            scheme, params = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            resp.release()
            if scheme == "bearer" and params.get("realm"):
                token = await self._token(params, params.get("scope", scope), creds)
                self._tokens[(ref.api_host, scope, user)] = token
                hdrs["Authorization"] = f"Bearer {token.value}"
            elif scheme == "basic" and creds:
                hdrs["Authorization"] = _basic(creds)
            else:
                raise _denied(resp.status, "authentication required")
            return await _check(await self._http().get(url, headers=hdrs))
        except aiohttp.ClientError as e:
            raise RegistryError(f"failed to do request: GET {url}: {e}") from None
        except TimeoutError:
            raise RegistryError(f"failed to do request: GET {url}: timed out") from None

    async def _token(
        self, params: dict[str, str], scope: str, creds: tuple[str, str] | None
    ) -> _Token:
        query = {k: v for k, v in (("service", params.get("service")), ("scope", scope)) if v}
        url = (
            params["realm"]
            + ("&" if "?" in params["realm"] else "?")
            + urllib.parse.urlencode(query)
        )
        headers = {"Authorization": _basic(creds)} if creds else {}
        async with self._http().get(url, headers=headers) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise _denied(resp.status, _registry_message(body) or resp.reason or "")
        try:
            doc = json.loads(body)
            value = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            value = None
        if not value:
            raise RegistryError(f"token server {params['realm']} returned no token")
        # Renew a little early; the spec's default lifetime is 60 seconds.
        expires = time.monotonic() + max(int(doc.get("expires_in") or 60) - 10, 10)
        return _Token(str(value), expires)


class _Response:
    """``async with`` around `RegistryClient._send`, releasing the response after."""

    def __init__(
        self,
        client: RegistryClient,
        ref: Reference,
        url: str,
        auth: Credentials,
        headers: dict[str, str],
    ) -> None:
        self._args = (ref, url, auth, headers)
        self._client = client
        self._resp: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        self._resp = await self._client._send(*self._args)
        return self._resp

    async def __aexit__(self, *exc: object) -> None:
        if self._resp is not None:
            self._resp.release()


def _basic(creds: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


def _denied(status: int, message: str) -> RegistryError:
    return RegistryError(
        "pull access denied, repository does not exist or may require authorization: "
        f"server message: {message}",
        status=status,
    )


async def _check(resp: aiohttp.ClientResponse) -> aiohttp.ClientResponse:
    if resp.status == 200:
        return resp
    body = await resp.read()
    resp.release()
    message = _registry_message(body) or f"{resp.status} {resp.reason}"
    if resp.status == 404:
        raise RegistryError(message, not_found=True, status=404)
    if resp.status in (401, 403):
        raise _denied(resp.status, message)
    raise RegistryError(
        f"unexpected status from GET {resp.url}: {resp.status} {resp.reason}: {message}",
        status=resp.status,
    )


def _credentials(auth: Credentials, ref: Reference) -> tuple[str, str] | None:
    for host in (ref.domain, ref.api_host):
        if host in auth:
            return auth[host]
    return auth.get(DOCKER_HUB) if ref.domain == DOCKER_HUB else None


def credentials_from_dockerconfig(configs: list[bytes | str | dict]) -> dict[str, tuple[str, str]]:
    """Credentials from the ``.dockerconfigjson`` of ``kubernetes.io/dockerconfigjson``
    secrets (decoded from the secret's base64 ``data``), first secret winning per host,
    as the kubelet merges ``imagePullSecrets``. Hosts are normalised: the key may be a
    URL (``https://index.docker.io/v1/``) and Docker Hub's aliases become ``docker.io``."""
    result: dict[str, tuple[str, str]] = {}
    for config in configs:
        doc = config if isinstance(config, dict) else json.loads(config)
        for key, entry in (doc.get("auths") or {}).items():
            host = _host_of(key)
            if host in result or not isinstance(entry, dict):
                continue
            user, password = entry.get("username"), entry.get("password")
            if entry.get("auth"):
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            if user is not None and password is not None:
                result[host] = (str(user), str(password))
    return result


def _host_of(key: str) -> str:
    if "://" in key:
        key = urllib.parse.urlsplit(key).netloc
    host = key.split("/", 1)[0]
    return DOCKER_HUB if host in ("index.docker.io", "registry-1.docker.io", "docker.io") else host
