"""`OCIRuntime`: the `Runtime` contract on runc, pinned namespaces, CNI and a shim.

A sandbox is not a process: it is a set of pinned namespaces (net, IPC, UTS; only IPC
for ``hostNetwork``), the pod's network attachment, its shared files and ``/dev/shm``,
and a cgroup parent. A container is an overlayfs rootfs over the image layers, a runc
bundle, and a shim process (`shim.py`) that owns its stdio, log and exit record.

State lives in files (`records`), so the object holds no state worth losing: a new
instance over the same directories sees, stops and execs into the containers a
previous agent started. `recover` additionally cleans up what a crash interrupted.

Pod start cost (bench/bench_runtime.py, 2-core VM, medians): sandbox 20 ms (pinning
~4 ms, CNI bridge ADD ~12 ms; ~100 ms with a hostPort, as portmap runs iptables),
container create 50 ms (shim start + ``runc create``), start 6 ms: a one-container pod
runs in ~76 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nanokube.runtime.contract import (
    ContainerConfig,
    ContainerStats,
    ContainerStatus,
    ExecResult,
    NotFound,
    OutputSink,
    PodNetwork,
    RuntimeFailure,
    SandboxConfig,
    SandboxStatus,
)
from nanokube.runtime.oci import attach, cgroups, linux, records, sandbox, shim, spec
from nanokube.runtime.oci.records import ContainerRecord, SandboxRecord
from nanokube.runtime.oci.runc import Runc

log = logging.getLogger(__name__)

SHM_SIZE = 64 * 1024 * 1024
KILL_WAIT = 10.0
"""Seconds to wait for a SIGKILLed container's exit record before giving up."""


@dataclass
class Paths:
    """Where the runtime keeps things; tests point all of them at temporary dirs."""

    state_dir: str = "/run/nanokube"
    data_dir: str = "/var/lib/nanokube"
    log_dir: str = "/var/log/pods"
    cgroup_root: str = "/nanokube"


class OCIRuntime:
    def __init__(
        self, network: PodNetwork | None, paths: Paths | None = None, runc: str = "runc"
    ) -> None:
        self.network = network
        self.paths = p = paths or Paths()
        self._sandboxes = os.path.join(p.state_dir, "sandboxes")
        self._netns = os.path.join(p.state_dir, "netns")
        self._containers = os.path.join(p.state_dir, "containers")
        self._layers = os.path.join(p.data_dir, "containers")
        for d in (self._sandboxes, self._containers, self._layers):
            os.makedirs(d, exist_ok=True)
        linux.ensure_shared_dir(self._netns)
        self.runc = Runc(shutil.which(runc) or runc, os.path.join(p.state_dir, "runc"))

    # --- sandboxes -------------------------------------------------------------------

    async def create_sandbox(self, config: SandboxConfig) -> SandboxStatus:
        sid = uuid.uuid4().hex
        directory = os.path.join(self._sandboxes, sid)
        os.makedirs(directory)
        rec = SandboxRecord(
            id=sid,
            config=config,
            created_at=time.time(),
            cgroup_parent=config.cgroup_parent or f"{self.paths.cgroup_root}/pod{config.uid}",
            hostname=sandbox.pod_hostname(config),
        )
        self._save_sandbox(rec)
        try:
            kinds = ["ipc"] if config.host_network else ["net", "ipc", "uts"]
            rec.namespaces = await linux.pin_namespaces(
                os.path.join(self._netns, sid), kinds, rec.hostname
            )
            if not config.host_network:
                if self.network is None:
                    raise RuntimeFailure("no pod network configured")
                attachment = await self.network.add(
                    sid, rec.namespaces["net"], _port_mappings(config), _cni_args(rec)
                )
                rec.ip = attachment.ips[0] if attachment.ips else ""
            sandbox.write_files(directory, config, rec.ip, rec.hostname)
            linux.mount_tmpfs(os.path.join(directory, "shm"), SHM_SIZE)
            rec.state = "ready"
            self._save_sandbox(rec)
        except BaseException:
            await self._teardown_sandbox(rec)
            raise
        log.info(
            "sandbox created id=%s pod=%s/%s ip=%s", sid, config.namespace, config.name, rec.ip
        )
        return _sandbox_status(rec)

    async def stop_sandbox(self, sandbox_id: str) -> None:
        rec = self._load_sandbox(sandbox_id)
        for c in self._container_records(sandbox_id):
            await self.stop_container(c.id, 0)
        await self._detach(rec)
        if rec.state != "notready":
            rec.state = "notready"
            self._save_sandbox(rec)

    async def remove_sandbox(self, sandbox_id: str) -> None:
        try:
            rec = self._load_sandbox(sandbox_id)
        except NotFound:
            return
        for c in self._container_records(sandbox_id):
            await self.remove_container(c.id)
        await self._teardown_sandbox(rec)
        log.info("sandbox removed id=%s", sandbox_id)

    async def sandbox_status(self, sandbox_id: str) -> SandboxStatus:
        return _sandbox_status(self._load_sandbox(sandbox_id))

    async def list_sandboxes(self) -> list[SandboxStatus]:
        out = []
        for sid in os.listdir(self._sandboxes):
            with contextlib.suppress(NotFound):
                out.append(_sandbox_status(self._load_sandbox(sid)))
        return out

    async def _detach(self, rec: SandboxRecord) -> None:
        """Release the pod's network (idempotent: also after a crash)."""
        if rec.config.host_network or self.network is None:
            return
        await self.network.delete(
            rec.id, rec.namespaces.get("net"), _port_mappings(rec.config), _cni_args(rec)
        )

    async def _teardown_sandbox(self, rec: SandboxRecord) -> None:
        await self._detach(rec)
        directory = os.path.join(self._sandboxes, rec.id)
        linux.umount(os.path.join(directory, "shm"))
        linux.unpin_namespaces(os.path.join(self._netns, rec.id))
        cgroups.remove(rec.cgroup_parent)
        shutil.rmtree(directory, ignore_errors=True)

    # --- containers ------------------------------------------------------------------

    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str:
        sb = self._load_sandbox(sandbox_id)
        if sb.state != "ready":
            raise RuntimeFailure(f"sandbox {sandbox_id} is not ready")
        cid = uuid.uuid4().hex
        bundle = os.path.join(self._containers, cid)
        rootfs = os.path.join(bundle, "rootfs")
        os.makedirs(bundle)
        log_path = config.log_path or os.path.join(
            self.paths.log_dir,
            f"{sb.config.namespace}_{sb.config.name}_{sb.config.uid}",
            config.name,
            f"{config.attempt}.log",
        )
        rec = ContainerRecord(
            id=cid,
            sandbox_id=sandbox_id,
            config=config,
            created_at=time.time(),
            log_path=log_path,
            cgroups_path=f"{sb.cgroup_parent}/{cid}",
        )
        records.save_container(os.path.join(bundle, "container.json"), rec)
        try:
            layer = os.path.join(self._layers, cid)
            linux.mount_overlay(
                config.layers, os.path.join(layer, "upper"), os.path.join(layer, "work"), rootfs
            )
            view = spec.SandboxView(
                namespaces=sb.namespaces,
                hostname=sb.hostname,
                etc_files={
                    dest: os.path.join(self._sandboxes, sandbox_id, os.path.basename(dest))
                    for dest in ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname")
                },
                shm=os.path.join(self._sandboxes, sandbox_id, "shm"),
                cgroup_parent=sb.cgroup_parent,
            )
            oci = spec.build_spec(config, view, rootfs, rec.cgroups_path)
            records.write_json(os.path.join(bundle, "config.json"), oci)
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
            rec.pid, rec.shim_pid = await self._spawn_shim(rec, bundle)
            records.save_container(os.path.join(bundle, "container.json"), rec)
        except BaseException:
            await self._cleanup_container(rec)
            raise
        log.info("container created id=%s sandbox=%s name=%s", cid, sandbox_id, config.name)
        return cid

    async def _spawn_shim(self, rec: ContainerRecord, bundle: str) -> tuple[int, int]:
        conf = {
            "id": rec.id,
            "bundle": bundle,
            "runc": self.runc.binary,
            "runc_root": self.runc.root,
            "runc_log": os.path.join(bundle, "runc.log"),
            "pid_file": os.path.join(bundle, "pid"),
            "exit_file": os.path.join(bundle, "exit.json"),
            "log_path": rec.log_path,
            "tty": "1" if rec.config.tty else "0",
            "stdin": "1" if rec.config.stdin else "0",
            "stdin_once": "1" if rec.config.stdin_once else "0",
            "attach_socket": os.path.join(bundle, "attach.sock"),
            "console_socket": os.path.join(bundle, "console.sock"),
            "oom_control": cgroups.oom_control(rec.cgroups_path),
        }
        # subprocess, not the event loop's: the shim outlives us, and an event loop
        # such as uvloop hands children duplicates of their stdio and our other fds
        # (the API server's listening socket), which a long-lived daemon must not hold.
        with open(os.path.join(bundle, "shim.log"), "ab") as shim_log:
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-I", "-S", shim.__file__, *(f"{k}={v}" for k, v in conf.items())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=shim_log,
                close_fds=True,
            )
        out = done.stdout
        try:
            report = json.loads(out)
        except ValueError:
            raise RuntimeFailure(f"container monitor failed: {out!r}") from None
        if "error" in report:
            raise RuntimeFailure(f"runc create failed: {report['error']}")
        return int(report["pid"]), int(report["shim"])

    async def start_container(self, container_id: str) -> None:
        rec = self._load_container(container_id)
        started = time.time()  # before: a quick container may exit before runc returns
        await self.runc.run("start", container_id)
        rec.started_at = started
        records.save_container(self._container_file(container_id), rec)

    async def stop_container(self, container_id: str, timeout: float) -> None:
        rec = self._load_container(container_id)
        if self._exit_record(container_id) is not None or not rec.pid:
            return
        if timeout > 0:
            _signal(rec.pid, signal.SIGTERM)
            if await self._wait_exit(container_id, timeout):
                return
        _signal(rec.pid, signal.SIGKILL)
        if not await self._wait_exit(container_id, KILL_WAIT):
            raise RuntimeFailure(f"container {container_id} did not exit after SIGKILL")

    async def _wait_exit(self, container_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        exit_file = os.path.join(self._containers, container_id, "exit.json")
        while not os.path.exists(exit_file):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def remove_container(self, container_id: str) -> None:
        try:
            rec = self._load_container(container_id)
        except NotFound:
            return
        status = await self.container_status(container_id)
        if status.state in ("running", "created"):
            await self.stop_container(container_id, 0)
        await self._cleanup_container(rec)

    async def _cleanup_container(self, rec: ContainerRecord) -> None:
        await self.runc.run("delete", "--force", rec.id, check=False)
        bundle = os.path.join(self._containers, rec.id)
        linux.umount(os.path.join(bundle, "rootfs"))
        cgroups.remove(rec.cgroups_path)
        shutil.rmtree(os.path.join(self._layers, rec.id), ignore_errors=True)
        shutil.rmtree(bundle, ignore_errors=True)

    async def container_status(self, container_id: str) -> ContainerStatus:
        rec = self._load_container(container_id)
        status = ContainerStatus(
            id=rec.id,
            sandbox_id=rec.sandbox_id,
            name=rec.config.name,
            state="created",
            created_at=rec.created_at,
            started_at=rec.started_at,
            pid=rec.pid,
            log_path=rec.log_path,
            image=rec.config.image,
            attempt=rec.config.attempt,
        )
        exited = self._exit_record(container_id)
        if exited is not None:
            status.state = "exited"
            status.exit_code = exited["exitCode"]
            status.finished_at = exited["finishedAt"]
            if exited["oomKilled"]:
                status.reason = "OOMKilled"
            else:
                status.reason = "Completed" if status.exit_code == 0 else "Error"
        elif not _alive(rec.shim_pid) and self._exit_record(container_id) is None:
            status.state = "unknown"
            status.reason = "Unknown"
            status.message = "the container's monitor exited without recording its exit"
        elif rec.started_at is not None:
            status.state = "running"
        return status

    async def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        out = []
        for rec in self._container_records(sandbox_id):
            with contextlib.suppress(NotFound):
                out.append(await self.container_status(rec.id))
        return out

    async def exec(
        self,
        container_id: str,
        cmd: list[str],
        *,
        tty: bool = False,
        stdin: AsyncIterator[bytes] | None = None,
        stdout: OutputSink | None = None,
        stderr: OutputSink | None = None,
        resize: AsyncIterator[tuple[int, int]] | None = None,
    ) -> int:
        status = await self.container_status(container_id)
        if status.state != "running":
            raise RuntimeFailure(f"container {container_id} is not running ({status.state})")
        return await self.runc.exec(
            container_id, cmd, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr, resize=resize
        )

    async def attach(
        self,
        container_id: str,
        *,
        stdin: AsyncIterator[bytes] | None = None,
        stdout: OutputSink | None = None,
        stderr: OutputSink | None = None,
        resize: AsyncIterator[tuple[int, int]] | None = None,
    ) -> None:
        status = await self.container_status(container_id)
        if status.state != "running":
            raise RuntimeFailure(f"container {container_id} is not running ({status.state})")
        try:
            # through the bundle dir's fd: a unix socket path is limited to 108 bytes
            bundle = os.open(os.path.join(self._containers, container_id), os.O_PATH)
            try:
                reader, writer = await asyncio.open_unix_connection(
                    f"/proc/self/fd/{bundle}/attach.sock"
                )
            finally:
                os.close(bundle)
        except OSError as e:
            raise RuntimeFailure(f"cannot attach to container {container_id}: {e}") from e
        await attach.stream(reader, writer, stdin, stdout, stderr, resize)

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> ExecResult:
        out: list[bytes] = []
        err: list[bytes] = []

        async def collect_out(data: bytes) -> None:
            out.append(data)

        async def collect_err(data: bytes) -> None:
            err.append(data)

        try:
            code = await asyncio.wait_for(
                self.exec(container_id, cmd, stdout=collect_out, stderr=collect_err), timeout
            )
        except TimeoutError:
            code = -1
        return ExecResult(exit_code=code, stdout=b"".join(out), stderr=b"".join(err))

    async def stats(self, container_id: str) -> ContainerStats:
        rec = self._load_container(container_id)
        try:
            return cgroups.stats(rec.cgroups_path)
        except OSError as e:
            raise RuntimeFailure(f"no stats for container {container_id}: {e}") from e

    # --- recovery --------------------------------------------------------------------

    async def recover(self) -> None:
        """Tear down sandboxes a crash left half-created (and their containers), release
        network attachments and IP reservations no sandbox owns, and delete containers
        whose sandbox is gone. Running containers are left alone: they are re-adopted
        just by being on disk."""
        known = set()
        for sid in os.listdir(self._sandboxes):
            try:
                rec = self._load_sandbox(sid)
            except NotFound:
                shutil.rmtree(os.path.join(self._sandboxes, sid), ignore_errors=True)
                continue
            if rec.state == "creating":
                log.warning("removing half-created sandbox id=%s", sid)
                await self.remove_sandbox(sid)
                continue
            known.add(sid)
            if rec.state == "ready" and not linux.is_mountpoint(rec.namespaces.get("ipc", "")):
                rec.state = "notready"  # namespaces gone (reboot): the pod must be recreated
                self._save_sandbox(rec)
        for cid in os.listdir(self._containers):
            try:
                crec = self._load_container(cid)
            except NotFound:
                shutil.rmtree(os.path.join(self._containers, cid), ignore_errors=True)
                continue
            if crec.sandbox_id not in known:
                await self._cleanup_container(crec)
        if self.network is not None:
            owners = set(self.network.cached_ids())
            owners.update(self.network.leftover_reservations().values())
            for owner in owners - known:
                log.warning("releasing leftover pod network id=%s", owner)
                await self.network.delete(owner, None)
        for sid in os.listdir(self._netns):
            if sid not in known:
                linux.unpin_namespaces(os.path.join(self._netns, sid))

    # --- records ---------------------------------------------------------------------

    def _save_sandbox(self, rec: SandboxRecord) -> None:
        records.save_sandbox(os.path.join(self._sandboxes, rec.id, "sandbox.json"), rec)

    def _load_sandbox(self, sandbox_id: str) -> SandboxRecord:
        try:
            return records.load_sandbox(os.path.join(self._sandboxes, sandbox_id, "sandbox.json"))
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise NotFound(f"sandbox {sandbox_id} not found") from None

    def _container_file(self, container_id: str) -> str:
        return os.path.join(self._containers, container_id, "container.json")

    def _load_container(self, container_id: str) -> ContainerRecord:
        try:
            return records.load_container(self._container_file(container_id))
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise NotFound(f"container {container_id} not found") from None

    def _container_records(self, sandbox_id: str | None) -> list[ContainerRecord]:
        out = []
        for cid in os.listdir(self._containers):
            with contextlib.suppress(NotFound):
                rec = self._load_container(cid)
                if sandbox_id is None or rec.sandbox_id == sandbox_id:
                    out.append(rec)
        return out

    def _exit_record(self, container_id: str) -> dict | None:
        try:
            data: dict = records.read_json(
                os.path.join(self._containers, container_id, "exit.json")
            )
        except (FileNotFoundError, ValueError):
            return None
        return data


def _sandbox_status(rec: SandboxRecord) -> SandboxStatus:
    return SandboxStatus(
        id=rec.id,
        config=rec.config,
        state="ready" if rec.state == "ready" else "notready",
        created_at=rec.created_at,
        ip=rec.ip,
        namespaces=dict(rec.namespaces),
        cgroup_parent=rec.cgroup_parent,
    )


def _port_mappings(config: SandboxConfig) -> list[dict]:
    return [
        {
            "hostPort": p.host_port,
            "containerPort": p.container_port,
            "protocol": p.protocol.lower(),
            **({"hostIP": p.host_ip} if p.host_ip else {}),
        }
        for p in config.port_mappings
        if p.host_port
    ]


def _cni_args(rec: SandboxRecord) -> dict[str, str]:
    return {
        "K8S_POD_NAMESPACE": rec.config.namespace,
        "K8S_POD_NAME": rec.config.name,
        "K8S_POD_INFRA_CONTAINER_ID": rec.id,
        "K8S_POD_UID": rec.config.uid,
    }


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    """Whether `pid` runs and is not a zombie."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
