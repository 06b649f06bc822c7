"""The registry client's pure parts: ``WWW-Authenticate`` challenges, credentials from
``imagePullSecrets`` (``.dockerconfigjson``), and HTTPS unless loopback or insecure."""

from __future__ import annotations

import base64
import json

import pytest

from nanokube.runtime.images import credentials_from_dockerconfig
from nanokube.runtime.images.reference import parse
from nanokube.runtime.images.registry import RegistryClient, parse_challenge


def test_bearer_challenge() -> None:
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'
    assert parse_challenge(header) == (
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:library/busybox:pull",
        },
    )


def test_basic_challenge_and_unquoted_values() -> None:
    assert parse_challenge('Basic realm="basic-realm"') == ("basic", {"realm": "basic-realm"})
    assert parse_challenge("Bearer realm=https://a/t, service=reg") == (
        "bearer",
        {"realm": "https://a/t", "service": "reg"},
    )


def test_credentials_from_dockerconfigjson() -> None:
    first = json.dumps(
        {
            "auths": {
                "https://index.docker.io/v1/": {
                    "auth": base64.b64encode(b"hubuser:hubpass:with:colons").decode()
                },
                "registry.example.com:5000": {"username": "u", "password": "p"},
            }
        }
    ).encode()
    second = {
        "auths": {
            "registry.example.com:5000": {"username": "later", "password": "x"},
            "quay.io": {"username": "q", "password": "w"},
        }
    }
    assert credentials_from_dockerconfig([first, second]) == {
        "docker.io": ("hubuser", "hubpass:with:colons"),
        "registry.example.com:5000": ("u", "p"),  # the first secret wins, as in the kubelet
        "quay.io": ("q", "w"),
    }


@pytest.mark.parametrize(
    ("ref", "insecure", "url"),
    [
        ("busybox", (), "https://registry-1.docker.io/v2/library/busybox"),
        ("localhost:5000/a", (), "http://localhost:5000/v2/a"),
        ("127.0.0.1:5000/a", (), "http://127.0.0.1:5000/v2/a"),
        ("registry.lan:5000/a", (), "https://registry.lan:5000/v2/a"),
        ("registry.lan:5000/a", ("registry.lan:5000",), "http://registry.lan:5000/v2/a"),
    ],
)
def test_plain_http_only_for_loopback_and_insecure(
    ref: str, insecure: tuple[str, ...], url: str
) -> None:
    assert RegistryClient(insecure).base_url(parse(ref)) == url
