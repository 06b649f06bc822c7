"""Image references: containerd's normalisation, digests and tags, invalid names,
and which registry hosts count as loopback (plain HTTP allowed)."""

from __future__ import annotations

import pytest

from nanokube.runtime.images import InvalidReference, normalize
from nanokube.runtime.images.reference import is_loopback, parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
        ("myuser/app", "docker.io/myuser/app:latest"),
        ("quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t"),
        (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
        (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}"),
        ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
    ],
)
def test_normalisation_matches_containerd(given: str, normalised: str) -> None:
    assert normalize(given) == normalised


def test_parts_and_api_host() -> None:
    ref = parse("busybox:1.36")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (
        "docker.io",
        "library/busybox",
        "1.36",
        "",
    )
    assert ref.name == "docker.io/library/busybox"
    assert ref.api_host == "registry-1.docker.io"
    assert parse("localhost:5000/x").api_host == "localhost:5000"
    assert str(ref.with_digest(D)) == f"docker.io/library/busybox@{D}"


@pytest.mark.parametrize(
    "bad",
    ["", "Busybox", "busybox:", "busybox@sha256:abc", "a//b", "busybox:bad tag", " busybox", "-x"],
)
def test_invalid_names_are_refused_with_the_name(bad: str) -> None:
    with pytest.raises(InvalidReference, match="invalid reference format"):
        parse(bad)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("[::1]:5000", True),
        ("registry.local:5000", False),
        ("10.0.0.1:5000", False),
        ("docker.io", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
