"""`nanokube server` wiring: where files go, what a start creates and reuses, the
store it opens, and the real server process: ready on /readyz with the admin
certificate, exit 0 on SIGTERM and SIGINT, and state kept across restarts."""

from __future__ import annotations

import ctypes
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support import free_port

from nanokube.cli import server
from nanokube.storage.memory import MemoryStore
from nanokube.storage.sqlite import SqliteStore


def options(tmp_path: Path, **kw: object) -> server.ServerOptions:
    return server.ServerOptions(
        data_dir=tmp_path / "data", write_kubeconfig=tmp_path / "etc" / "kubeconfig.yaml", **kw
    )  # type: ignore[arg-type]


def test_kubeconfig_goes_to_the_flag_path_and_the_data_dir(tmp_path: Path) -> None:
    opts = options(tmp_path)
    assert opts.kubeconfig_paths == [
        tmp_path / "etc" / "kubeconfig.yaml",
        tmp_path / "data" / "kubeconfig.yaml",
    ]
    same = server.ServerOptions(
        data_dir=tmp_path / "data", write_kubeconfig=tmp_path / "data" / "kubeconfig.yaml"
    )
    assert same.kubeconfig_paths == [tmp_path / "data" / "kubeconfig.yaml"]


def test_prepare_writes_certificates_and_kubeconfigs(tmp_path: Path) -> None:
    opts = options(tmp_path, port=7443, bind_address="0.0.0.0")
    tls = server.prepare(opts)
    for path in opts.kubeconfig_paths:
        doc = yaml.safe_load(path.read_text())
        assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:7443"
    assert tls.dir == tmp_path / "data" / "tls"
    assert tls.serving[0].exists() and tls.admin[1].exists()


def test_a_second_start_reuses_the_certificates(tmp_path: Path) -> None:
    opts = options(tmp_path)
    tls = server.prepare(opts)
    before = {p.name: p.read_bytes() for p in tls.dir.iterdir()}
    server.prepare(opts)
    assert {p.name: p.read_bytes() for p in tls.dir.iterdir()} == before


async def test_open_store_memory(tmp_path: Path) -> None:
    store = server.open_store(options(tmp_path, datastore="memory"))
    assert isinstance(store, MemoryStore)
    await store.close()


async def test_open_store_sqlite_lives_in_the_data_dir(tmp_path: Path) -> None:
    opts = options(tmp_path)
    store = server.open_store(opts)
    assert isinstance(store, SqliteStore)
    await store.create("/registry/x", b"{}")
    await store.close()
    assert opts.db_path == tmp_path / "data" / "db" / "state.db"
    assert opts.db_path.exists()


# --- the real server process ------------------------------------------------------


def die_with_parent() -> None:
    """In the child before exec: SIGKILL it if pytest dies, so no server outlives a killed run."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start_server(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nanokube.cli",
            "server",
            "--disable-agent",
            "--data-dir",
            str(tmp_path / "data"),
            "--write-kubeconfig",
            str(tmp_path / "kubeconfig.yaml"),
            "--https-listen-port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=die_with_parent,
    )


def readyz(tmp_path: Path, port: int) -> int:
    tls = tmp_path / "data" / "tls"
    ctx = ssl.create_default_context(cafile=str(tls / "server-ca.crt"))
    ctx.load_cert_chain(tls / "client-admin.crt", tls / "client-admin.key")
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen[str], tmp_path: Path, port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited {proc.returncode}:\n{proc.communicate()[0]}")
        try:
            if readyz(tmp_path, port) == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"server not ready in 30 s:\n{proc.communicate()[0]}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_server_serves_until_a_signal_then_exits_0(tmp_path: Path, signum: int) -> None:
    port = free_port()
    proc = start_server(tmp_path, port)
    try:
        wait_ready(proc, tmp_path, port)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "nanokube server ready" in out
    assert "nanokube server stopped" in out
    assert os.stat(tmp_path / "kubeconfig.yaml").st_mode & 0o777 == 0o600


def test_a_port_in_use_is_a_clear_failure(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = start_server(tmp_path, taken.getsockname()[1])
        try:
            out, _ = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1
    assert "address already in use" in out.lower()
