"""What only the HTTP client has: mutual TLS with the cluster CA and a client certificate
(from files or a kubeconfig as `nanokube server` writes it), and Status bodies mapped back
to the right error classes."""

from __future__ import annotations

from pathlib import Path

import pytest
from client_support import CONFIG_MAP, start_server

from nanokube.api import errors
from nanokube.api.errors import Cause
from nanokube.cli import certs, kubeconfig
from nanokube.client.http import HTTPClient, error_from_status


@pytest.fixture
async def tls_server(tmp_path: Path):
    tls = certs.ensure_cluster_tls(tmp_path / "tls", certs.serving_sans("127.0.0.1"))
    srv, runner = await start_server(
        cert_file=str(tls.serving[0]),
        key_file=str(tls.serving[1]),
        client_ca_file=str(tls.client_ca[0]),
    )
    try:
        yield srv, tls
    finally:
        await srv.cache.stop()
        await runner.cleanup()  # type: ignore[attr-defined]


async def test_mutual_tls_from_files(tls_server) -> None:
    srv, tls = tls_server
    async with HTTPClient(
        f"https://127.0.0.1:{srv.config.port}",
        ca_file=str(tls.server_ca[0]),
        cert_file=str(tls.admin[0]),
        key_file=str(tls.admin[1]),
    ) as client:
        created = await client.create(CONFIG_MAP, {"metadata": {"name": "tls"}}, "default")
        assert created["metadata"]["name"] == "tls"


async def test_from_kubeconfig_with_embedded_certificates(tls_server, tmp_path: Path) -> None:
    srv, tls = tls_server
    path = tmp_path / "kubeconfig.yaml"
    kubeconfig.write(
        [path],
        kubeconfig.server_url("127.0.0.1", srv.config.port),
        tls.server_ca[0].read_bytes(),
        tls.admin[0].read_bytes(),
        tls.admin[1].read_bytes(),
    )
    async with HTTPClient.from_kubeconfig(path) as client:
        listed = await client.list(CONFIG_MAP, "default")
        assert listed["kind"] == "ConfigMapList"


async def test_no_client_certificate_is_unauthorized(tls_server) -> None:
    srv, tls = tls_server
    async with HTTPClient(
        f"https://127.0.0.1:{srv.config.port}", ca_file=str(tls.server_ca[0])
    ) as client:
        with pytest.raises(errors.Unauthorized):
            await client.list(CONFIG_MAP, "default")


@pytest.mark.parametrize(
    "error",
    [
        errors.not_found("pods", "web"),
        errors.already_exists("deployments", "d", "apps"),
        errors.conflict("configmaps", "c"),
        errors.Expired("too old resource version: 1 (5)"),
        errors.TooManyRequests("slow down", retry_after=3),
        errors.invalid(
            "Pod", "p", [Cause("spec.containers", "Required value", "FieldValueRequired")]
        ),
    ],
)
def test_status_bodies_map_back_to_their_error(error: errors.StatusError) -> None:
    back = error_from_status(error.code, error.to_status())
    assert type(back) is type(error)
    assert back.to_status() == error.to_status()


def test_non_status_bodies_map_by_code() -> None:
    assert type(error_from_status(404, "404 page not found")) is errors.NotFound
    assert type(error_from_status(502, None)) is errors.StatusError
