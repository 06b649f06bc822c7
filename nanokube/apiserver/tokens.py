"""Bearer-token authentication with the cluster's join token, in k3s's shape.

A node joins with one shared secret, as k3s's agents do. The server keeps it
in `DATA_DIR/token` (created on first start, mode 0600) in k3s's "secure"
format

    K10<sha256 of the server CA certificate, hex>::server:<secret>

The `K10` prefix and the CA hash let a joining agent check the server it
talks to before it trusts anything (it fetches `/cacerts` unverified and
compares the hash); `server` is the token's user name; `<secret>` is what
authenticates. A bare `<secret>` is accepted too (k3s's short form), without
that server check.

`TokenAuthenticator.authenticate(headers)` maps `Authorization: Bearer
<token>` to a user:

- a valid join token with the node name in the `Nanokube-Node-Name` header
  (k3s sends `k3s-Node-Name`): user `system:node:<name>`, groups
  `system:nodes` and `system:authenticated` (what a node's client
  certificate says, so RBAC's `system:node` rules apply alike);
- a valid join token without it: user `system:bootstrap:nanokube`, groups
  `system:bootstrappers` and `system:authenticated`: enough to ask for a node
  certificate, nothing else once RBAC is on;
- any other bearer token: `Unauthorized` (401), as upstream answers a bad
  token even on paths anonymous users may read;
- no bearer token: None (another authenticator, or anonymous, decides).

Secrets are compared in constant time. Node certificates are issued by
`tokens_nodecert` (the `/v1-nanokube/node-cert` endpoint).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanokube.api import errors

log = logging.getLogger(__name__)

TOKEN_PREFIX = "K10"
TOKEN_FILE = "token"
NODE_NAME_HEADER = "Nanokube-Node-Name"
NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
BOOTSTRAP_USER = "system:bootstrap:nanokube"
BOOTSTRAPPERS_GROUP = "system:bootstrappers"
AUTHENTICATED_GROUP = "system:authenticated"

User = dict[str, Any]


class TokenFormatError(ValueError):
    """The text is not a join token."""


@dataclass(frozen=True)
class JoinToken:
    """A parsed join token; `ca_hash` is empty for the short form."""

    secret: str
    ca_hash: str = ""
    username: str = "server"

    def __str__(self) -> str:
        if not self.ca_hash:
            return self.secret
        return f"{TOKEN_PREFIX}{self.ca_hash}::{self.username}:{self.secret}"


def ca_hash(ca_pem: bytes) -> str:
    """k3s's CA hash: sha256 of the CA bundle's bytes, as served at `/cacerts`."""
    return hashlib.sha256(ca_pem).hexdigest()


def parse_token(text: str) -> JoinToken:
    """`K10<hash>::<user>:<secret>` or a bare `<secret>`."""
    text = text.strip()
    if not text:
        raise TokenFormatError("empty token")
    if text.startswith(TOKEN_PREFIX) and "::" in text:
        digest, _, credentials = text[len(TOKEN_PREFIX) :].partition("::")
        username, sep, secret = credentials.partition(":")
        if not sep:
            username, secret = "server", credentials
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise TokenFormatError("the CA hash of a K10 token must be 64 hex digits")
        if not secret:
            raise TokenFormatError("the token has no secret")
        return JoinToken(secret=secret, ca_hash=digest, username=username or "server")
    if any(c.isspace() for c in text) or "::" in text:
        raise TokenFormatError("not a join token")
    return JoinToken(secret=text)


def ensure_token_file(
    data_dir: str | os.PathLike[str], ca_pem: bytes, given: str = ""
) -> JoinToken:
    """The server's join token: `given` (a `--token` flag), else the one in
    `DATA_DIR/token`, else a new random one; written back with the current CA hash."""
    path = Path(data_dir) / TOKEN_FILE
    secret = ""
    if given:
        secret = parse_token(given).secret
    else:
        try:
            secret = parse_token(path.read_text()).secret
        except FileNotFoundError:
            pass
        except TokenFormatError as e:
            log.warning("unreadable token file, creating a new token path=%s error=%s", path, e)
    if not secret:
        secret = secrets.token_hex(16)
        log.info("created the join token path=%s", path)
    token = JoinToken(secret=secret, ca_hash=ca_hash(ca_pem))
    text = f"{token}\n"
    try:
        unchanged = path.read_text() == text
    except OSError:
        unchanged = False
    if not unchanged:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(fd, 0o600)
            f.write(text)
        os.replace(tmp, path)
    return token


class TokenAuthenticator:
    """Authenticates bearer tokens against the cluster's join token."""

    def __init__(self, token: JoinToken) -> None:
        self.token = token

    def check(self, presented: str) -> bool:
        """Whether `presented` carries the join secret (and, if it names one, our CA)."""
        try:
            parsed = parse_token(presented)
        except TokenFormatError:
            return False
        if parsed.ca_hash and self.token.ca_hash and parsed.ca_hash != self.token.ca_hash:
            return False
        return hmac.compare_digest(parsed.secret.encode(), self.token.secret.encode())

    def authenticate(self, headers: Mapping[str, str]) -> User | None:
        """The user of a request's bearer token; None without one; 401 for a bad one."""
        auth = headers.get("Authorization", "")
        scheme, _, presented = auth.partition(" ")
        if scheme.lower() != "bearer":
            return None
        if not self.check(presented.strip()):
            raise errors.Unauthorized("Unauthorized")
        node = headers.get(NODE_NAME_HEADER, "").strip().lower()
        if node:
            if not valid_node_name(node):
                raise errors.Unauthorized(f"invalid node name {node!r}")
            return {
                "username": NODE_USER_PREFIX + node,
                "groups": [NODES_GROUP, AUTHENTICATED_GROUP],
            }
        return {"username": BOOTSTRAP_USER, "groups": [BOOTSTRAPPERS_GROUP, AUTHENTICATED_GROUP]}


def valid_node_name(name: str) -> bool:
    """A DNS subdomain (what a Node's name must be)."""
    if not name or len(name) > 253:
        return False
    for label in name.split("."):
        if not label or len(label) > 63 or label[0] == "-" or label[-1] == "-":
            return False
        if any(not (c.isascii() and (c.isalnum() or c == "-")) for c in label):
            return False
    return True


def with_bearer_tokens(
    x509_user_of: Callable[[Any], User | None], authenticator: TokenAuthenticator
) -> Callable[[Any], User | None]:
    """The API server's `_user_of(request)` extended with bearer tokens.

    A client certificate wins (as upstream's union authenticator tries x509
    first); then the bearer token; a bad token raises `Unauthorized`.
    """

    def user_of(request: Any) -> User | None:
        user = x509_user_of(request)
        if user is not None:
            return user
        return authenticator.authenticate(request.headers)

    return user_of


def node_name_of(user: User | None) -> str:
    """The node a user is (`system:node:NAME` in `system:nodes`), or ""."""
    if not user or NODES_GROUP not in (user.get("groups") or ()):
        return ""
    name = str(user.get("username", ""))
    return name[len(NODE_USER_PREFIX) :] if name.startswith(NODE_USER_PREFIX) else ""
