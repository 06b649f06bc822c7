"""The admin kubeconfig: the URL it names, its structure, how it is written, and
that the real kubectl reads it."""

from __future__ import annotations

import base64
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from nanokube.cli import kubeconfig

CA, CERT, KEY = b"-----CA-----\n", b"-----CERT-----\n", b"-----KEY-----\n"


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        ("127.0.0.1", "https://127.0.0.1:6443"),
        ("0.0.0.0", "https://127.0.0.1:6443"),
        ("::", "https://127.0.0.1:6443"),
        ("", "https://127.0.0.1:6443"),
        ("::1", "https://[::1]:6443"),
        ("192.0.2.7", "https://192.0.2.7:6443"),
        ("api.example", "https://api.example:6443"),
    ],
)
def test_server_url(bind: str, url: str) -> None:
    assert kubeconfig.server_url(bind, 6443) == url


def test_render_is_a_kubeconfig_with_embedded_pems() -> None:
    doc = yaml.safe_load(kubeconfig.render("https://[::1]:7443", CA, CERT, KEY))
    assert doc["current-context"] == "default"
    assert doc["contexts"] == [
        {"name": "default", "context": {"cluster": "default", "user": "default"}}
    ]
    cluster = doc["clusters"][0]
    assert cluster["name"] == "default"
    assert cluster["cluster"]["server"] == "https://[::1]:7443"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == CA
    user = doc["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == CERT
    assert base64.b64decode(user["client-key-data"]) == KEY


def test_write_creates_parents_and_keeps_the_file_private(tmp_path: Path) -> None:
    paths = [tmp_path / "etc" / "nanokube" / "kubeconfig.yaml", tmp_path / "kubeconfig.yaml"]
    paths[1].write_text("old")
    paths[1].chmod(0o644)
    kubeconfig.write(paths, "https://127.0.0.1:6443", CA, CERT, KEY)
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert yaml.safe_load(path.read_text())["kind"] == "Config"
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_an_unchanged_file_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig.yaml"
    kubeconfig.write([path], "https://127.0.0.1:6443", CA, CERT, KEY)
    inode = path.stat().st_ino
    kubeconfig.write([path], "https://127.0.0.1:6443", CA, CERT, KEY)
    assert path.stat().st_ino == inode
    kubeconfig.write([path], "https://127.0.0.1:7443", CA, CERT, KEY)
    assert path.stat().st_ino != inode
    assert "7443" in path.read_text()


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
def test_kubectl_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig.yaml"
    kubeconfig.write([path], "https://127.0.0.1:16443", CA, CERT, KEY)
    out = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(path),
            "config",
            "view",
            "--raw",
            "-o",
            "jsonpath={.current-context} {.clusters[0].cluster.server}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == "default https://127.0.0.1:16443"
