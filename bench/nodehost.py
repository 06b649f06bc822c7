"""The machine side of `bench_node`: its server-with-agent, the other agents, cleanup, CPU.

`NodeServer` is `common.Server` with the node agent, placed beside (never over)
any other agent on the machine, as the e2e harness's `node_cluster` is: its own
node name, kubelet port, CNI bridge, pod CIDR, state and log dirs and cgroup root.
Its containers outlive it by design (each has a shim that setsids away), so
`teardown` force-removes what a drain through the API left, and removes the
mounts, cgroups and bridge the agent made. CPU figures come from /proc, with the
children a process has waited for counted apart (CNI plugins, `runc start`) and
the shims (which are nobody's waited-for children) found by their command line.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

from bench import common

NODE_NAME = "nanokube-bench-node"
BRIDGE = "nkbn0"
CLUSTER_CIDR = "10.194.0.0/16"  # e2e uses 10.195, the unit tests 10.196-199
PR_SET_PDEATHSIG = 1


def other_agents() -> list[str]:
    """Node agents running on this machine now, as `pid: command` lines."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        words = " ".join(argv)
        if "nanokube" not in words:
            continue
        server = "server" in argv and "--disable-agent" not in argv
        if server or "agent" in argv:
            found.append(f"{entry.name}: {words[:160]}")
    listening = subprocess.run(
        ["ss", "-Htln", "sport = :10250"], capture_output=True, text=True
    ).stdout
    if listening.strip():
        found.append(f"a listener on port 10250: {listening.split()[3]}")
    return found


def wait_for_machine(timeout: float) -> None:
    """Wait (killing nothing) until no other node agent runs; SystemExit after `timeout`."""
    deadline = time.monotonic() + timeout
    said = False
    while agents := other_agents():
        if time.monotonic() > deadline:
            print("    another node agent is still running; not starting:")
            for a in agents:
                print(f"      {a}")
            raise SystemExit(3)
        if not said:
            print(f"    another node agent runs; waiting up to {timeout:.0f} s:")
            for a in agents:
                print(f"      {a}")
            said = True
        time.sleep(5)


def die_with_parent() -> None:
    """In the child: SIGKILL it if the benchmark dies, so no server outlives it."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class NodeServer(common.Server):
    """`common.Server` with its node agent, beside (never over) any other agent."""

    def __init__(self, root: Path) -> None:
        super().__init__(root / "data", agent=True)
        self.host = root / "host"  # the agent's runtime state and pod logs
        self.cgroup_root = f"/nanokube-bench-{os.getpid()}"
        self.preexec_fn = die_with_parent

    @property
    def runc_root(self) -> str:
        return str(self.host / "run" / "runc")

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--node-name",
            NODE_NAME,
            "--kubelet-port",
            str(common.free_port()),
            "--cni-bridge",
            BRIDGE,
            "--cluster-cidr",
            CLUSTER_CIDR,
            "--state-dir",
            str(self.host / "run"),
            "--pod-log-dir",
            str(self.host / "logs"),
            "--cgroup-root",
            self.cgroup_root,
        ]

    def runc_containers(self) -> list[str]:
        out = subprocess.run(
            ["runc", "--root", self.runc_root, "list", "-q"], capture_output=True, text=True
        ).stdout
        return out.split()

    def shims(self) -> list[int]:
        """Pids of this agent's container monitors (they outlive the server by design)."""
        marker = f"runc_root={self.runc_root}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if marker in (entry / "cmdline").read_bytes():
                        pids.append(int(entry.name))
        return pids


def agentless_rss(data_dir: Path) -> float:
    """Idle RSS of a `--disable-agent` server: what the agent adds is the rest."""
    server = common.Server(data_dir)
    try:
        server.start()
        time.sleep(1.0)
        return server.rss_mb()
    finally:
        server.stop()


def cpu_with_children(pid: int) -> tuple[float, float]:
    """CPU seconds of a process itself, and of its children it has waited for."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        own = int(fields[11]) + int(fields[12])  # utime, stime
        children = int(fields[13]) + int(fields[14])  # cutime, cstime
        return own / common.CLOCK_TICKS, children / common.CLOCK_TICKS
    return 0.0, 0.0


def others_busy(pid: int, seconds: float = 2.0) -> float:
    """Cores the rest of the machine keeps busy while `pid` idles (other helpers' work)."""
    busy0, own0 = common.machine_busy_seconds(), sum(cpu_with_children(pid))
    time.sleep(seconds)
    busy, own = common.machine_busy_seconds() - busy0, sum(cpu_with_children(pid)) - own0
    return (busy - own) / seconds


def pss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return 0.0


def teardown(server: NodeServer, root: Path) -> None:
    """Stop the server; remove whatever its agent left: containers, mounts, cgroups, bridge."""
    server.stop()
    left = server.runc_containers()
    if left:
        print(f"    {len(left)} containers left after the drain: force-removing them")
        for cid in left:
            subprocess.run(["runc", "--root", server.runc_root, "delete", "-f", cid])
    with open("/proc/self/mountinfo") as f:
        targets = [ln.split()[4] for ln in f if ln.split()[4].startswith(str(root))]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)
    for controller in Path("/sys/fs/cgroup").iterdir():
        top = controller / server.cgroup_root.lstrip("/")
        if top.is_dir() and not top.is_symlink():
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    shims = server.shims()
    if shims:
        print(f"    shims still running after teardown: {shims}")
