"""Registries for pull tests: Debian's ``docker-registry`` (CNCF distribution 2.8) on a
loopback port, and a small aiohttp front that counts requests and can demand bearer
tokens from a token endpoint of its own (the flow Docker Hub and most registries use).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import secrets
import signal
import subprocess
import time
import urllib.request
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from aiohttp import ClientSession, web
from support import free_port

BINARY = "docker-registry"


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def htpasswd(user: str, password: str) -> str:
    """An htpasswd line with a cheap bcrypt hash (cost 4: the registry checks it on
    every request)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # bcrypt through glibc's libxcrypt; no extra package needed

        salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)
        return f"{user}:{crypt.crypt(password, salt)}\n"


@contextlib.contextmanager
def registry(base: Path, users: dict[str, str] | None = None) -> Iterator[str]:
    """Run a registry storing under `base`; yields its address ``127.0.0.1:PORT``.
    With `users`, it demands HTTP basic auth (htpasswd)."""
    port = free_port()
    base.mkdir(parents=True, exist_ok=True)
    auth = ""
    if users:
        (base / "htpasswd").write_text("".join(htpasswd(u, p) for u, p in users.items()))
        auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {base / 'htpasswd'}\n"
    (base / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth
    )
    log = open(base / "registry.log", "wb")
    proc = subprocess.Popen(
        [BINARY, "serve", str(base / "config.yml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # 401 from an authenticating registry: it is up
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"docker-registry did not start: {(base / 'registry.log').read_text()}"
                    ) from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)
        log.close()


class Front:
    """An HTTP front for an upstream registry: counts GETs by path and, with `users`,
    demands bearer tokens that only its ``/token`` endpoint issues (given the right
    basic credentials), as a registry with a separate token server does."""

    def __init__(self, upstream: str, users: dict[str, str] | None = None) -> None:
        self.upstream = upstream
        self.users = users
        self.requests: Counter[str] = Counter()
        self.token_requests = 0
        self.tokens: set[str] = set()
        self.tamper: dict[str, bytes] = {}
        """Path -> a body served instead of the registry's (a corrupting middlebox)."""
        self.address = ""
        self._runner: web.AppRunner | None = None
        self._http: ClientSession | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/token", self._token)
        app.router.add_route("*", "/v2/{tail:.*}", self._proxy)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self._http = ClientSession(auto_decompress=False)
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def stop(self) -> None:
        if self._http:
            await self._http.close()
        if self._runner:
            await self._runner.cleanup()

    def blob_gets(self) -> Counter[str]:
        return Counter({p: n for p, n in self.requests.items() if "/blobs/" in p})

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        header = request.headers.get("Authorization", "")
        user, _, password = (
            base64.b64decode(header[6:]).decode().partition(":")
            if header.startswith("Basic ")
            else ("", "", "")
        )
        if not self.users or self.users.get(user) != password:
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials for token"}]},
                status=401,
            )
        token = secrets.token_hex(8)
        self.tokens.add(token)
        return web.json_response({"token": token, "expires_in": 300})

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        if self.users is not None:
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer ") or header[7:] not in self.tokens:
                repo = request.path[4:].rsplit("/", 2)[0]
                challenge = (
                    f'Bearer realm="http://{self.address}/token",service="test-registry",'
                    f'scope="repository:{repo}:pull"'
                )
                return web.json_response(
                    {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                    status=401,
                    headers={"WWW-Authenticate": challenge},
                )
        if request.method == "GET":
            self.requests[request.path] += 1
        if request.path in self.tamper:
            return web.Response(body=self.tamper[request.path])
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items() if k in ("Accept",)}
        async with self._http.request(
            request.method,
            f"http://{self.upstream}{request.path_qs}",
            headers=headers,
            data=await request.read(),
        ) as up:
            resp = web.StreamResponse(status=up.status)
            for key in ("Content-Type", "Docker-Content-Digest", "Content-Length", "Location"):
                if key in up.headers:
                    resp.headers[key] = up.headers[key]
            await resp.prepare(request)
            async for chunk in up.content.iter_chunked(1 << 16):
                await resp.write(chunk)
            await resp.write_eof()
            return resp
