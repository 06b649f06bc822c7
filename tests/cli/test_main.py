"""The `nanokube` command line: server flags (named as k3s names them), and
`nanokube kubectl` (kubeconfig lookup, exec of the real kubectl, exit codes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nanokube.cli import kubeconfig, main

needs_kubectl = pytest.mark.skipif(
    not os.access(main.DEFAULT_KUBECTL, os.X_OK), reason="/usr/bin/kubectl is not installed"
)


def test_server_flag_defaults() -> None:
    opts = main.build_parser().parse_args(["server"])
    assert opts.data_dir == Path("/var/lib/nanokube")
    assert opts.bind_address == "127.0.0.1"
    assert opts.https_listen_port == 6443
    assert opts.write_kubeconfig == Path("/etc/nanokube/kubeconfig.yaml")
    assert (opts.disable_agent, opts.datastore, opts.simulated_nodes, opts.v) == (
        False,
        "sqlite",
        0,
        0,
    )


def test_server_flags() -> None:
    opts = main.build_parser().parse_args(
        "server --data-dir /d --bind-address 0.0.0.0 --https-listen-port 7443 "
        "--write-kubeconfig /k.yaml --disable-agent --datastore memory --simulated-nodes 3 -v 4".split()
    )
    assert opts.data_dir == Path("/d")
    assert (opts.bind_address, opts.https_listen_port) == ("0.0.0.0", 7443)
    assert opts.write_kubeconfig == Path("/k.yaml")
    assert (opts.disable_agent, opts.datastore, opts.simulated_nodes, opts.v) == (
        True,
        "memory",
        3,
        4,
    )


def test_unknown_datastore_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.build_parser().parse_args(["server", "--datastore", "etcd3"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


class TestKubeconfigLookup:
    @pytest.fixture(autouse=True)
    def global_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        path = tmp_path / "etc" / "kubeconfig.yaml"
        monkeypatch.setattr(main, "GLOBAL_KUBECONFIG", path)
        return path

    def test_explicit_kubeconfig_env_wins(self, tmp_path: Path) -> None:
        env = main.kubectl_environment(["get", "pods"], {"KUBECONFIG": "/mine"}, tmp_path)
        assert env["KUBECONFIG"] == "/mine"

    @pytest.mark.parametrize("args", [["--kubeconfig", "/x", "get"], ["--kubeconfig=/x", "get"]])
    def test_explicit_flag_leaves_the_environment_alone(
        self, tmp_path: Path, args: list[str]
    ) -> None:
        assert "KUBECONFIG" not in main.kubectl_environment(args, {"PATH": "/bin"}, tmp_path)

    def test_global_file_when_readable(self, tmp_path: Path, global_file: Path) -> None:
        global_file.parent.mkdir()
        global_file.write_text("")
        (tmp_path / ".kube").mkdir()
        (tmp_path / ".kube" / "nanokube.yaml").write_text("")
        assert main.kubectl_environment([], {}, tmp_path)["KUBECONFIG"] == str(global_file)

    def test_home_file_otherwise(self, tmp_path: Path) -> None:
        (tmp_path / ".kube").mkdir()
        (tmp_path / ".kube" / "nanokube.yaml").write_text("")
        env = main.kubectl_environment([], {}, tmp_path)
        assert env["KUBECONFIG"] == str(tmp_path / ".kube" / "nanokube.yaml")

    def test_global_path_when_nothing_exists(self, tmp_path: Path, global_file: Path) -> None:
        assert main.kubectl_environment([], {}, tmp_path)["KUBECONFIG"] == str(global_file)


def nanokube(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nanokube.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


@needs_kubectl
def test_kubectl_runs_with_the_cluster_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig.yaml"
    kubeconfig.write([path], "https://127.0.0.1:16443", b"ca", b"cert", b"key")
    done = nanokube("kubectl", "config", "current-context", env={"KUBECONFIG": str(path)})
    assert (done.returncode, done.stdout) == (0, "default\n")


@needs_kubectl
def test_kubectl_exit_code_passes_through(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig.yaml"
    kubeconfig.write([path], "https://127.0.0.1:16443", b"ca", b"cert", b"key")
    done = nanokube("kubectl", "config", "use-context", "nope", env={"KUBECONFIG": str(path)})
    assert done.returncode == 1
    assert "no context exists with the name" in done.stderr


@needs_kubectl
def test_kubectl_help_is_kubectl_s() -> None:
    done = nanokube("kubectl", "--help", env={})
    assert done.returncode == 0
    assert "kubectl controls the Kubernetes cluster manager" in done.stdout


def test_missing_kubectl_is_a_clear_error(tmp_path: Path) -> None:
    done = nanokube("kubectl", "get", "pods", env={"KUBECTL": str(tmp_path / "no-kubectl")})
    assert done.returncode == 127
    assert "cannot run kubectl" in done.stderr
