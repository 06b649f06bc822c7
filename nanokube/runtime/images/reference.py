"""Image references normalised as containerd and the kubelet do.

``busybox`` is ``docker.io/library/busybox:latest``; ``quay.io/x/y`` gets ``:latest``; a
digest (``name@sha256:...``) pins the content and may come with a tag, which is then
informational. The first path component is a registry host only when it contains a
``.`` or a ``:`` or is ``localhost`` (docker's rule), so ``myuser/app`` is on Docker Hub.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from nanokube.runtime.images.errors import InvalidReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
"""Docker Hub's name in references and the host that serves its distribution API."""

_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOST = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\.?)+(?::[0-9]+)?|\[[0-9a-fA-F:.]+\](?::[0-9]+)?"
)


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """The repository with its registry: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def api_host(self) -> str:
        """Where the distribution API of `domain` is served."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, "", digest)

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s


def parse(ref: str) -> Reference:
    """Parse and normalise `ref`; raises `InvalidReference` with the reason."""
    if not ref or ref != ref.strip():
        raise InvalidReference(f"invalid reference format: {ref!r}")
    rest, _, digest = ref.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise InvalidReference(f"invalid reference format: {ref!r}: bad digest")
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidReference(f"invalid reference format: {ref!r}: bad tag")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _HOST.fullmatch(first):
            raise InvalidReference(f"invalid reference format: {ref!r}: bad registry host")
        domain, path = first, remainder
    else:
        domain, path = DOCKER_HUB, rest
    if domain in _HUB_ALIASES:
        domain = DOCKER_HUB
        if "/" not in path:
            path = "library/" + path
    if path != path.lower():
        raise InvalidReference(
            f"invalid reference format: repository name must be lowercase: {ref!r}"
        )
    if not all(_COMPONENT.fullmatch(c) for c in path.split("/")):
        raise InvalidReference(f"invalid reference format: {ref!r}")
    if not tag and not digest:
        tag = "latest"
    return Reference(domain, path, tag, digest)


def normalize(ref: str) -> str:
    """``busybox`` -> ``docker.io/library/busybox:latest``."""
    return str(parse(ref))


def is_loopback(host: str) -> bool:
    """Whether `host` (with or without ``:port``) names this machine."""
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
