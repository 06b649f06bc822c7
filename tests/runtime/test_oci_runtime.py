"""The OCI runtime with real runc containers (root, runc, busybox-static, CNI plugins).

Aspects: a pod's containers share one network namespace and IP; host directory
mounts; exit codes and reasons; graceful stop then SIGKILL; OOM kills; CRI log
format; exec (collected, streamed stdin, tty); security context; stats; per-pod
files; hostNetwork; re-adoption by a new runtime instance; IP release on teardown,
also after a crash.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from nanokube.runtime import contract as c
from nanokube.runtime.oci import records
from nanokube.runtime.oci.runtime import OCIRuntime

LOG_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) ([FP]) (.*)$")


async def wait_state(
    rt: OCIRuntime, container_id: str, state: c.ContainerState = "exited", timeout: float = 10
) -> c.ContainerStatus:
    """Poll until the container reaches `state` (a test helper, not a timing assert)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await rt.container_status(container_id)
        if status.state == state or loop.time() > deadline:
            return status
        await asyncio.sleep(0.02)


def pod(name: str = "web", **kw: object) -> c.SandboxConfig:
    return c.SandboxConfig(uid=f"uid-{name}", name=name, namespace="default", **kw)  # type: ignore[arg-type]


def container(busybox: Path, name: str, command: list[str], **kw: object) -> c.ContainerConfig:
    return c.ContainerConfig(name=name, layers=[str(busybox)], command=command, **kw)  # type: ignore[arg-type]


async def run(rt: OCIRuntime, sandbox_id: str, config: c.ContainerConfig) -> str:
    cid = await rt.create_container(sandbox_id, config)
    await rt.start_container(cid)
    return cid


async def test_containers_of_a_pod_share_network_and_ip(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    assert sb.state == "ready" and sb.ip.startswith("10.199.0.")
    server = await run(
        runtime,
        sb.id,
        container(busybox, "server", ["nc", "-ll", "-p", "8080", "-e", "echo", "hi"]),
    )
    client = await run(runtime, sb.id, container(busybox, "client", ["sleep", "1000"]))
    for _ in range(100):
        reply = await runtime.exec_sync(client, ["nc", "127.0.0.1", "8080"], 5)
        if reply.stdout:
            break
        await asyncio.sleep(0.02)
    assert reply.stdout == b"hi\n"
    for cid in (server, client):
        ip = await runtime.exec_sync(cid, ["ip", "-o", "-4", "addr", "show", "eth0"], 5)
        assert f"inet {sb.ip}/24" in ip.stdout.decode()
    statuses = await runtime.list_containers(sb.id)
    assert {s.name: s.state for s in statuses} == {"server": "running", "client": "running"}


async def test_pod_ip_is_reachable_from_host(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    await run(
        runtime, sb.id, container(busybox, "s", ["nc", "-ll", "-p", "80", "-e", "echo", "ok"])
    )
    for _ in range(100):
        proc = await asyncio.create_subprocess_exec(
            "busybox",
            "nc",
            sb.ip,
            "80",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await proc.communicate()
        if out:
            break
        await asyncio.sleep(0.02)
    assert out == b"ok\n"


async def test_host_directory_is_shared_between_containers(
    runtime: OCIRuntime, busybox: Path, tmp_path: Path
):
    shared = tmp_path / "shared"
    shared.mkdir()
    sb = await runtime.create_sandbox(pod())
    writer = await run(
        runtime,
        sb.id,
        container(
            busybox,
            "writer",
            ["sh", "-c", "echo data > /shared/file; exec sleep 1000"],
            mounts=[c.Mount(str(shared), "/shared")],
        ),
    )
    reader = await run(
        runtime,
        sb.id,
        container(
            busybox,
            "reader",
            ["sleep", "1000"],
            mounts=[c.Mount(str(shared), "/shared", readonly=True)],
        ),
    )
    for _ in range(100):
        if (shared / "file").exists():
            break
        await asyncio.sleep(0.02)
    read = await runtime.exec_sync(reader, ["cat", "/shared/file"], 5)
    assert read.stdout == b"data\n"
    denied = await runtime.exec_sync(reader, ["touch", "/shared/other"], 5)
    assert denied.exit_code != 0
    assert (shared / "file").read_text() == "data\n"
    assert (await runtime.container_status(writer)).state == "running"


async def test_exit_codes_and_reasons(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    ok = await run(runtime, sb.id, container(busybox, "ok", ["true"]))
    bad = await run(runtime, sb.id, container(busybox, "bad", ["sh", "-c", "exit 3"]))
    ok_status = await wait_state(runtime, ok)
    bad_status = await wait_state(runtime, bad)
    assert (ok_status.exit_code, ok_status.reason) == (0, "Completed")
    assert (bad_status.exit_code, bad_status.reason) == (3, "Error")
    assert bad_status.started_at is not None and bad_status.finished_at is not None
    assert bad_status.finished_at >= bad_status.started_at


async def test_create_then_start(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    cid = await runtime.create_container(sb.id, container(busybox, "app", ["sleep", "1000"]))
    assert (await runtime.container_status(cid)).state == "created"
    await runtime.start_container(cid)
    assert (await runtime.container_status(cid)).state == "running"


async def test_bad_command_fails_create(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    config = container(busybox, "app", ["/no/such/binary"])
    try:
        cid = await runtime.create_container(sb.id, config)
        await runtime.start_container(cid)
    except c.RuntimeFailure as e:
        assert "no/such/binary" in str(e)
    else:
        raise AssertionError("a missing binary must fail create or start")


async def test_stop_uses_sigterm_then_sigkill(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    graceful = await run(
        runtime,
        sb.id,
        container(
            busybox, "graceful", ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.05; done"]
        ),
    )
    stubborn = await run(runtime, sb.id, container(busybox, "stubborn", ["sleep", "1000"]))
    await asyncio.sleep(0.1)  # let the shell install its trap
    await runtime.stop_container(graceful, timeout=10)
    await runtime.stop_container(stubborn, timeout=0.3)  # pid 1 ignores SIGTERM: killed
    g = await runtime.container_status(graceful)
    s = await runtime.container_status(stubborn)
    assert (g.state, g.exit_code) == ("exited", 0)
    assert (s.state, s.exit_code, s.reason) == ("exited", 137, "Error")
    await runtime.stop_container(stubborn, timeout=1)  # stopping again is a no-op


async def test_memory_limit_oom_kills(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    limits = c.Resources(memory_limit=16 * 1024 * 1024)
    hog = await run(
        runtime, sb.id, container(busybox, "hog", ["tail", "/dev/zero"], resources=limits)
    )
    status = await wait_state(runtime, hog, timeout=30)
    assert (status.state, status.exit_code, status.reason) == ("exited", 137, "OOMKilled")


async def test_logs_are_written_in_cri_format(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod("logger"))
    script = "echo one; echo two >&2; printf 'no newline'; head -c 20000 /dev/zero | tr '\\0' x"
    cid = await run(runtime, sb.id, container(busybox, "app", ["sh", "-c", script], attempt=2))
    status = await wait_state(runtime, cid)
    assert status.log_path.endswith("/default_logger_uid-logger/app/2.log")
    lines = Path(status.log_path).read_bytes().splitlines()
    parsed = [LOG_LINE.match(line) for line in lines]
    assert all(parsed), lines
    entries = [(m.group(1), m.group(2), m.group(3)) for m in parsed if m]
    assert (b"stdout", b"F", b"one") in entries
    assert (b"stderr", b"F", b"two") in entries
    stdout = [e for e in entries if e[0] == b"stdout"]
    assert stdout[1][1] == b"P"  # 16 KiB without a newline: a partial line
    assert b"".join(e[2] for e in stdout[1:]) == b"no newline" + b"x" * 20000


async def test_exec_returns_output_and_exit_code(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    cid = await run(
        runtime, sb.id, container(busybox, "app", ["sleep", "1000"], env={"GREETING": "hello"})
    )
    result = await runtime.exec_sync(cid, ["sh", "-c", "echo $GREETING; echo oops >&2; exit 7"], 5)
    assert result == c.ExecResult(exit_code=7, stdout=b"hello\n", stderr=b"oops\n")
    timed_out = await runtime.exec_sync(cid, ["sleep", "10"], 0.2)
    assert timed_out.exit_code == -1


async def test_exec_streams_stdin_and_tty(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    cid = await run(runtime, sb.id, container(busybox, "app", ["sleep", "1000"]))
    received: list[bytes] = []

    async def sink(data: bytes) -> None:
        received.append(data)

    async def source() -> AsyncIterator[bytes]:
        yield b"line 1\n"
        yield b"line 2\n"

    code = await runtime.exec(cid, ["cat"], stdin=source(), stdout=sink)
    assert code == 0 and b"".join(received) == b"line 1\nline 2\n"
    received.clear()
    code = await runtime.exec(cid, ["sh", "-c", "tty; exit 4"], tty=True, stdout=sink)
    assert code == 4
    assert re.match(rb"/dev/pts/\d+\r?\n", b"".join(received))


async def test_security_context(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    security = c.SecurityContext(
        run_as_user=65534,
        read_only_root_filesystem=True,
        capabilities_drop=["ALL"],
        capabilities_add=["NET_BIND_SERVICE"],
        no_new_privs=True,
        seccomp="RuntimeDefault",
    )
    cid = await run(runtime, sb.id, container(busybox, "app", ["sleep", "1000"], security=security))
    ident = await runtime.exec_sync(cid, ["id"], 5)
    assert ident.stdout.startswith(b"uid=65534(nobody) gid=65534(nogroup)")
    assert (await runtime.exec_sync(cid, ["touch", "/tmp/x"], 5)).exit_code != 0
    proc_status = (await runtime.exec_sync(cid, ["cat", "/proc/self/status"], 5)).stdout.decode()
    fields = dict(line.split(":\t", 1) for line in proc_status.splitlines() if ":\t" in line)
    assert int(fields["CapBnd"], 16) == 1 << 10  # CAP_NET_BIND_SERVICE only
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"

    plain = await run(runtime, sb.id, container(busybox, "plain", ["sleep", "1000"]))
    plain_status = (await runtime.exec_sync(plain, ["cat", "/proc/self/status"], 5)).stdout
    assert b"Seccomp:\t0" in plain_status
    assert (await runtime.exec_sync(plain, ["touch", "/tmp/x"], 5)).exit_code == 0


async def test_stats_read_the_container_cgroup(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    cid = await run(runtime, sb.id, container(busybox, "app", ["sleep", "1000"]))
    stats = await runtime.stats(cid)
    assert stats.cpu_usage_ns > 0
    assert 0 < stats.memory_working_set_bytes <= stats.memory_usage_bytes


async def test_pod_files_hostname_and_dns(runtime: OCIRuntime, busybox: Path):
    dns = c.DNSConfig(
        nameservers=["10.43.0.10"], searches=["default.svc.cluster.local"], options=["ndots:5"]
    )
    sb = await runtime.create_sandbox(
        pod("named", hostname="myhost", dns=dns, host_aliases={"10.1.2.3": ["foo", "bar"]})
    )
    cid = await run(runtime, sb.id, container(busybox, "app", ["sleep", "1000"]))
    assert (await runtime.exec_sync(cid, ["hostname"], 5)).stdout == b"myhost\n"
    hosts = (await runtime.exec_sync(cid, ["cat", "/etc/hosts"], 5)).stdout.decode()
    assert f"{sb.ip}\tmyhost" in hosts and "10.1.2.3\tfoo\tbar" in hosts
    resolv = (await runtime.exec_sync(cid, ["cat", "/etc/resolv.conf"], 5)).stdout.decode()
    assert resolv == "nameserver 10.43.0.10\nsearch default.svc.cluster.local\noptions ndots:5\n"


async def test_host_network_sandbox(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod("hostnet", host_network=True))
    assert sb.ip == "" and "net" not in sb.namespaces
    cid = await run(runtime, sb.id, container(busybox, "app", ["sleep", "1000"]))
    links = (await runtime.exec_sync(cid, ["ip", "-o", "link"], 5)).stdout.decode()
    assert "nkt0" in links  # the test bridge lives in the host's network namespace
    hostname = (await runtime.exec_sync(cid, ["hostname"], 5)).stdout.decode().strip()
    assert hostname == os.uname().nodename


async def test_new_runtime_instance_readopts_containers(
    runtime: OCIRuntime, busybox: Path, new_runtime: Callable[[], OCIRuntime]
):
    sb = await runtime.create_sandbox(pod())
    cid = await run(runtime, sb.id, container(busybox, "app", ["sleep", "1000"]))
    again = new_runtime()  # what a restarted agent constructs
    await again.recover()
    assert [s.id for s in await again.list_sandboxes()] == [sb.id]
    status = await again.container_status(cid)
    assert status.state == "running" and status.sandbox_id == sb.id
    assert (await again.exec_sync(cid, ["echo", "still here"], 5)).stdout == b"still here\n"
    await again.stop_container(cid, timeout=0)
    assert (await runtime.container_status(cid)).exit_code == 137


async def test_teardown_releases_ip(runtime: OCIRuntime, busybox: Path):
    network = runtime.network
    assert network is not None
    sb = await runtime.create_sandbox(pod())
    await run(runtime, sb.id, container(busybox, "app", ["sleep", "1000"]))
    assert list(network.leftover_reservations().values()) == [sb.id]
    await runtime.stop_sandbox(sb.id)
    assert network.leftover_reservations() == {}
    await runtime.stop_sandbox(sb.id)  # idempotent
    await runtime.remove_sandbox(sb.id)
    await runtime.remove_sandbox(sb.id)
    assert network.leftover_reservations() == {}
    assert await runtime.list_sandboxes() == []


async def test_recover_releases_ip_of_half_created_sandbox(
    runtime: OCIRuntime, busybox: Path, new_runtime: Callable[[], OCIRuntime]
):
    network = runtime.network
    assert network is not None
    sb = await runtime.create_sandbox(pod())
    # Simulate a crash in the middle of create_sandbox: the record still says "creating".
    path = os.path.join(runtime.paths.state_dir, "sandboxes", sb.id, "sandbox.json")
    rec = records.load_sandbox(path)
    rec.state = "creating"
    records.save_sandbox(path, rec)
    assert network.leftover_reservations()
    again = new_runtime()
    await again.recover()
    assert network.leftover_reservations() == {}
    assert await again.list_sandboxes() == []
    assert os.listdir(os.path.join(runtime.paths.state_dir, "netns")) == []
