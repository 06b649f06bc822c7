"""Shared pieces of the benchmarks: a real `nanokube server` subprocess and ways to measure it.

The benchmarks drive the server as users do: a separate process started by
its command line, spoken to over HTTPS with the admin client certificate of
the kubeconfig it writes. Figures that say where time goes come from outside
the server too: its CPU time and RSS are read from `/proc/PID/stat` and
`/proc/PID/status`, so a benchmark can tell a busy server (one core, since it
is one asyncio thread) from a busy load generator.

Readiness is polled at `/readyz`, which is open to anonymous clients, with a
context that does not verify the server: the poll then works from the first
moment, before the server has even written its certificates on a cold start.

(The e2e harness, `tests/e2e/conftest.py`, has its own `Cluster` for the same
job; the two could share one module, e.g. `nanokube/testing/server.py`, once
both settle.)
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import orjson
import yaml

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on uvloop when it is installed (the loop the server runs on), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def free_port() -> int:
    """A loopback port nobody listens on now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nanokube_command() -> list[str]:
    """The `nanokube` console script next to this interpreter, else `python -m nanokube.cli`."""
    script = Path(sys.executable).parent / "nanokube"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "nanokube.cli"]


class Server:
    """A `nanokube server` subprocess on a loopback port, sqlite in `data_dir`; by default
    without its node agent (`--disable-agent`)."""

    def __init__(self, data_dir: Path, port: int | None = None, *, agent: bool = False) -> None:
        self.data_dir = data_dir
        self.agent = agent
        self.port = port or free_port()
        self.kubeconfig = data_dir / "kubeconfig.yaml"
        self.log_path = data_dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_poll = 0.005  # seconds between `/readyz` polls while starting
        self.preexec_fn: Callable[[], None] | None = None  # run in the child before exec

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The server's command line; a benchmark that needs more flags extends it."""
        return [
            *nanokube_command(),
            "server",
            *([] if self.agent else ["--disable-agent"]),
            "--data-dir",
            str(self.data_dir),
            "--https-listen-port",
            str(self.port),
            "--write-kubeconfig",
            str(self.kubeconfig),
        ]

    def start(self) -> float:
        """Spawn `command()` and wait for `/readyz` 200; seconds from spawn to ready."""
        cmd = self.command()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        probe = ssl.create_default_context()
        probe.check_hostname = False
        probe.verify_mode = ssl.CERT_NONE
        with self.log_path.open("ab") as log:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self.preexec_fn,
            )
        deadline = t0 + READY_TIMEOUT
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self._status("/readyz", probe) == 200:
                    return time.perf_counter() - t0
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(self.ready_poll)
        self.kill()
        raise RuntimeError(f"server not ready after {READY_TIMEOUT}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within STOP_TIMEOUT."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"  (server ignored SIGTERM for {STOP_TIMEOUT}s: killed)")
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _status(self, path: str, context: ssl.SSLContext) -> int:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=2)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        finally:
            conn.close()


def memory_status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/PID/status: VmRSS, RssAnon, RssFile, VmHWM..."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.strip().endswith(" kB"):
            out[key] = int(value.split()[0])
    return out


def rss_mb(pid: int) -> float:
    """Resident set size (VmRSS) of a process, in MB."""
    return memory_status(pid)["VmRSS"] / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used so far (from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def client_tls(kubeconfig: Path, workdir: Path) -> dict[str, Any]:
    """What a client needs to reach the cluster of an admin kubeconfig, as picklable data.

    The kubeconfig embeds the CA, certificate and key as base64 PEM; `ssl`
    loads a certificate chain only from files, so they are written to
    `workdir` (mode 0600, like the kubeconfig itself).
    """
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / "admin.crt", workdir / "admin.key"
    for path, field in ((cert, "client-certificate-data"), (key, "client-key-data")):
        path.write_bytes(base64.b64decode(user[field]))
        path.chmod(0o600)
    return {
        "server": cluster["server"],
        "ca": base64.b64decode(cluster["certificate-authority-data"]).decode(),
        "cert": str(cert),
        "key": str(key),
    }


def ssl_context(tls: dict[str, Any]) -> ssl.SSLContext:
    """Trusts the cluster CA and presents the admin certificate, as kubectl does."""
    ctx = ssl.create_default_context(cadata=tls["ca"])
    ctx.load_cert_chain(tls["cert"], tls["key"])
    return ctx


class Client:
    """A blocking keep-alive HTTPS client for set-up steps and single timed requests."""

    def __init__(self, tls: dict[str, Any]) -> None:
        host, port = tls["server"].removeprefix("https://").rsplit(":", 1)
        self.conn = http.client.HTTPSConnection(
            host, int(port), context=ssl_context(tls), timeout=60
        )

    def request(
        self, method: str, path: str, body: Any = None, accept: str = "application/json"
    ) -> tuple[int, bytes]:
        headers = {"Accept": accept}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def json(self, method: str, path: str, body: Any = None) -> Any:
        status, raw = self.request(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {raw[:300]!r}")
        return orjson.loads(raw)

    def close(self) -> None:
        self.conn.close()


def quantile(sorted_values: list[float], q: float) -> float:
    """The q-quantile of an already sorted list (nearest rank)."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def figure(name: str, value: str, target: str = "", ok: bool | None = None) -> None:
    """One printed figure: name, value, target and whether the target is met."""
    verdict = "" if ok is None else ("  ok" if ok else "  MISSED")
    tail = f"   target {target}{verdict}" if target else ""
    print(f"  {name:<44} {value:>24}{tail}", flush=True)


def note(text: str) -> None:
    print(f"    {text}", flush=True)
