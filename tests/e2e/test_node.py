"""The node agent end to end: the real kubectl against a `nanokube server` whose agent runs
real runc containers (the `node_cluster` fixture: busybox imported from an archive).

Aspects: a pod's containers share the network and an emptyDir; logs (follow, tail,
container, previous); an interactive exec on a pty with its exit code; cp in and
out; attach to a stdin container and `run -it --rm`; port-forward; top; the OOM killer and CrashLoopBackOff; liveness and
readiness probes; preStop hooks and graceful deletion; kill -9 of the server
leaves containers running and the restarted agent re-adopts them; a Deployment
of 20 replicas; image import and a pull from a loopback registry; a missing image
(ErrImagePull, then ImagePullBackOff with the registry's reason).

The pods of several aspects are created at once by one module fixture, so their
start-ups and back-offs overlap; each test then waits for what it checks. The
agent's back-off starts at 10 s, as upstream's, which bounds the restart tests.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import free_port

Cluster = Any  # tests/e2e/conftest.py's Cluster

NS = "node-e2e"
BUSYBOX = "busybox:latest"
RUNTIME_TESTS = Path(__file__).parents[1] / "runtime"

Obj = dict[str, Any]


# --- helpers ----------------------------------------------------------------------------


def runc_list(c: Cluster) -> list[Obj]:
    """The node's containers as runc sees them (its own runc root, under --state-dir)."""
    root = Path(c.flag("--state-dir")) / "runc"
    out = subprocess.run(
        ["runc", "--root", str(root), "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return list(json.loads(out or "null") or [])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def apply(c: Cluster, *objects: Obj) -> str:
    # Documents, not a `kind: List`: kubectl validates a List against /openapi/v2,
    # which nanokube does not serve.
    body = "\n---\n".join(json.dumps(o) for o in objects)
    return str(c.kubectl("apply", "-f", "-", input=body).stdout)


def get_pod(c: Cluster, name: str) -> Obj:
    return dict(json.loads(c.kubectl("get", "pod", name, "-n", NS, "-o", "json").stdout))


def container_status(pod: Obj, name: str) -> Obj:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if s["name"] == name), {})


def running(c: Cluster, name: str) -> Obj | None:
    pod = get_pod(c, name)
    return pod if pod["status"].get("phase") == "Running" else None


def wait_running(c: Cluster, name: str, timeout: float = 60.0) -> Obj:
    try:
        return dict(wait_for(f"pod {name} Running", lambda: running(c, name), timeout))
    except AssertionError as e:
        described = c.kubectl("describe", "pod", name, "-n", NS, check=False).stdout
        raise AssertionError(f"{e}\n{described}") from None


def exec_out(c: Cluster, pod: str, container: str, *command: str) -> str:
    return str(c.kubectl("exec", pod, "-n", NS, "-c", container, "--", *command).stdout)


def pod(name: str, containers: list[Obj], **spec: Any) -> Obj:
    for container in containers:
        container.setdefault("image", BUSYBOX)
        container.setdefault("imagePullPolicy", "IfNotPresent")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"terminationGracePeriodSeconds": 5, "containers": containers, **spec},
    }


def sh(script: str) -> list[str]:
    # PID 1 ignores signals it has no handler for: the trap makes SIGTERM end it at once.
    return ["sh", "-c", "trap 'exit 0' TERM; " + script]


# The app serves a file over HTTP and counts; the sidecar fetches it over localhost
# into the shared emptyDir.
WEB = pod(
    "web",
    [
        {
            "name": "app",
            "command": sh(
                "mkdir -p /www; echo hello-from-app > /www/index.html; httpd -p 8080 -h /www; "
                "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.5; done"
            ),
            "ports": [{"containerPort": 8080}],
            "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
        },
        {
            "name": "sidecar",
            "command": sh(
                "echo sidecar-up; while true; do "
                "wget -q -O /shared/fetched.tmp http://127.0.0.1:8080/index.html "
                "&& mv /shared/fetched.tmp /shared/fetched; sleep 0.5; done"
            ),
            "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
        },
    ],
    volumes=[{"name": "shared", "emptyDir": {}}],
)

OOM = pod(
    "oom",
    [
        {
            "name": "hog",
            "command": ["sh", "-c", "echo allocating; head -c 100m /dev/zero | tail"],
            "resources": {"limits": {"memory": "20Mi"}},
        }
    ],
)

LIVENESS = pod(
    "liveness",
    [
        {
            "name": "app",
            # Alive for about 2 s, then the probe's file goes and the kubelet kills it.
            "command": sh(
                "touch /tmp/alive; echo boot; i=0; while true; do echo tick-$i; "
                "i=$((i+1)); [ $i = 4 ] && rm /tmp/alive; sleep 0.5; done"
            ),
            "livenessProbe": {
                "exec": {"command": ["test", "-f", "/tmp/alive"]},
                "periodSeconds": 1,
                "failureThreshold": 1,
            },
        }
    ],
    terminationGracePeriodSeconds=2,
)

READINESS = pod(
    "readiness",
    [
        {
            "name": "app",
            "command": sh("while true; do sleep 0.5; done"),
            "readinessProbe": {
                "exec": {"command": ["test", "-f", "/tmp/ready"]},
                "periodSeconds": 1,
            },
        }
    ],
)

ATTACH = pod(
    "attach",
    [{"name": "cat", "command": ["cat"], "stdin": True, "stdinOnce": True}],
    restartPolicy="Never",
)


@pytest.fixture(scope="module")
def pods(node_cluster: Cluster) -> Iterator[Cluster]:
    """The shared pods, created together; the cluster they run on."""
    c = node_cluster
    c.kubectl("create", "namespace", NS)
    apply(c, WEB, OOM, LIVENESS, READINESS, ATTACH)
    yield c
    c.kubectl("delete", "namespace", NS, "--wait=false", check=False)


# --- one pod, two containers -----------------------------------------------------------


def test_containers_share_network_and_empty_dir(pods: Cluster) -> None:
    c = pods
    web = wait_running(c, "web")
    wait_for(
        "the sidecar's copy of the app's page",
        lambda: (
            c.kubectl(
                "exec",
                "web",
                "-n",
                NS,
                "-c",
                "sidecar",
                "--",
                "cat",
                "/shared/fetched",
                check=False,
            ).stdout
        ),
    )
    assert exec_out(c, "web", "sidecar", "cat", "/shared/fetched") == "hello-from-app\n"
    assert exec_out(c, "web", "app", "cat", "/shared/fetched") == "hello-from-app\n"
    addresses = {
        name: exec_out(c, "web", name, "ip", "-4", "-o", "addr", "show", "eth0")
        for name in ("app", "sidecar")
    }
    assert addresses["app"] == addresses["sidecar"], addresses
    ip = get_pod(c, "web")["status"]["podIP"] or web["status"]["podIP"]
    assert f"inet {ip}/" in addresses["app"], (ip, addresses)
    # The host reaches the pod on its IP (through the node's bridge).
    with urllib.request.urlopen(f"http://{ip}:8080/index.html", timeout=5) as resp:
        assert resp.read() == b"hello-from-app\n"


# --- logs -------------------------------------------------------------------------------


def _last_tick(text: str) -> int:
    ticks = [int(n) for n in re.findall(r"^tick-(\d+)$", text, re.M)]
    return max(ticks) if ticks else -1


def test_logs_follow_tail_and_container(pods: Cluster) -> None:
    c = pods
    wait_running(c, "web")
    now = wait_for(
        "ticks in the app's log",
        lambda: _last_tick(c.kubectl("logs", "web", "-n", NS, "-c", "app").stdout) + 1,
    )
    tail = c.kubectl("logs", "web", "-n", NS, "-c", "app", "--tail=1").stdout
    assert re.fullmatch(r"tick-\d+\n", tail), tail
    assert c.kubectl("logs", "web", "-n", NS, "-c", "sidecar").stdout.startswith("sidecar-up\n")
    # -f: a line written after kubectl started arrives while it runs.
    want = f"tick-{now + 2}"
    proc = subprocess.Popen(
        c.kubectl_argv("logs", "-f", "web", "-n", NS, "-c", "app", "--tail=1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=c.kubectl_env(),
    )
    try:
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if not ready:
                continue
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line.strip())
            if line.strip() == want:
                break
        assert want in seen, (seen, proc.poll())
        assert proc.poll() is None, "kubectl logs -f ended on its own"
    finally:
        proc.terminate()
        proc.wait(10)


def test_logs_previous_after_liveness_restart(pods: Cluster) -> None:
    c = pods

    def restarted() -> Obj | None:
        status = container_status(get_pod(c, "liveness"), "app")
        return status if status.get("restartCount", 0) >= 1 else None

    status = wait_for("a liveness restart", restarted, 60)
    assert status["lastState"]["terminated"]["exitCode"] in (0, 137, 143), status
    previous = c.kubectl("logs", "liveness", "-n", NS, "--previous").stdout
    assert previous.startswith("boot\ntick-0\n"), previous
    assert "tick-3" in previous, previous
    described = c.kubectl("describe", "pod", "liveness", "-n", NS).stdout
    assert "Liveness probe failed" in described, described
    # The count keeps rising: each new instance fails its probe again.
    wait_for(
        "a second liveness restart",
        lambda: container_status(get_pod(c, "liveness"), "app").get("restartCount", 0) >= 2,
        60,
    )


def test_readiness_gates_ready(pods: Cluster) -> None:
    c = pods
    wait_running(c, "readiness")
    time.sleep(2)  # several probe periods: still not ready
    row = c.kubectl("get", "pod", "readiness", "-n", NS, "--no-headers").stdout.split()
    assert row[1:3] == ["0/1", "Running"], row
    ready = [x for x in get_pod(c, "readiness")["status"]["conditions"] if x["type"] == "Ready"]
    assert ready[0]["status"] == "False", ready
    exec_out(c, "readiness", "app", "touch", "/tmp/ready")
    c.kubectl("wait", "--for=condition=Ready", "pod/readiness", "-n", NS, "--timeout=30s")
    row = c.kubectl("get", "pod", "readiness", "-n", NS, "--no-headers").stdout.split()
    assert row[1:4] == ["1/1", "Running", "0"], row


# --- exec, cp, port-forward, top --------------------------------------------------------


def test_exec_interactive_on_a_pty(pods: Cluster) -> None:
    c = pods
    wait_running(c, "web")
    argv = c.kubectl_argv("exec", "-it", "web", "-n", NS, "-c", "app", "--", "sh")
    pid, fd = pty.fork()
    if pid == 0:  # the child: kubectl on the pty's slave side
        os.execve(argv[0], argv, c.kubectl_env())
    output = b""
    try:
        deadline = time.monotonic() + 30
        sent = False
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the slave side closed (kubectl exited)
                    break
                if not chunk:
                    break
                output += chunk
            if not sent and (b"#" in output or b"$" in output):  # the shell's prompt
                os.write(fd, b"echo hi; exit 3\r")
                sent = True
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    text = output.decode(errors="replace")
    assert sent, text
    # Both ttys (the pod's and ours) may turn a newline into CR LF: "hi\r\r\n".
    assert re.search(r"^hi\r*$", text, re.M), text
    assert os.waitstatus_to_exitcode(status) == 3, text
    # Without a terminal the exit code comes back too.
    done = c.kubectl("exec", "web", "-n", NS, "-c", "app", "--", "sh", "-c", "exit 5", check=False)
    assert done.returncode == 5 and "command terminated with exit code 5" in done.stderr, done


def on_pty(
    argv: list[str],
    env: dict[str, str],
    reply: tuple[bytes, bytes] = (b"", b""),
    timeout: float = 60,
) -> tuple[str, int]:
    """Run `argv` on a pty's slave side until it exits: (output, exit code). `reply`:
    when its first part shows in the output, type its second part once."""
    pid, fd = pty.fork()
    if pid == 0:  # a terminal of 33 rows and 101 columns, which kubectl passes on
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        os.execve(argv[0], argv, env)
    output = b""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the slave side closed
                    break
                if not chunk:
                    break
                output += chunk
            if reply[1] and reply[0] in output:
                os.write(fd, reply[1])
                reply = (b"", b"")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return output.decode(errors="replace"), os.waitstatus_to_exitcode(status)


def test_attach_feeds_stdin_of_a_stdin_container(pods: Cluster) -> None:
    c = pods
    wait_running(c, "attach")
    done = c.kubectl("attach", "-i", "attach", "-n", NS, "-c", "cat", input="hello attach\n")
    assert "hello attach" in done.stdout, done
    # stdinOnce: the end of the session's stdin is cat's end of input
    wait_for(
        "cat to exit",
        lambda: container_status(get_pod(c, "attach"), "cat").get("state", {}).get("terminated"),
    )


def test_run_it_rm_prints_the_output(pods: Cluster) -> None:
    c = pods
    argv = c.kubectl_argv(
        "run", "-it", "--rm", "-n", NS, f"--image={BUSYBOX}", "--image-pull-policy=IfNotPresent",
        "--restart=Never", "t", "--", "sh", "-c", "echo hi",
    )  # fmt: skip
    text, code = on_pty(argv, c.kubectl_env())
    assert re.search(r"^hi\r*$", text, re.M), text
    assert code == 0, text
    wait_for(
        "pod t deleted",
        lambda: (
            "t"
            not in c.kubectl("get", "pods", "-n", NS, "-o", "name")
            .stdout.replace("pod/", " ")
            .split()
        ),
    )


def test_run_it_attaches_to_a_shell(pods: Cluster) -> None:
    c = pods
    argv = c.kubectl_argv(
        "run", "-it", "--rm", "-n", NS, f"--image={BUSYBOX}", "--image-pull-policy=IfNotPresent",
        "--restart=Never", "shell", "--", "sh",
    )  # fmt: skip
    typed = b"echo hi-$((1+1)); stty size; exit 3\r"
    text, code = on_pty(argv, c.kubectl_env(), reply=(b"try pressing enter", typed))
    assert re.search(r"^hi-2\r*$", text, re.M), text
    assert re.search(r"^33 101\r*$", text, re.M), text  # the resize reached the pod's tty
    assert code == 3, text


def test_cp_in_and_out_byte_identical(pods: Cluster, tmp_path: Path) -> None:
    c = pods
    wait_running(c, "web")
    data = os.urandom(300_000) + bytes(range(256))
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    c.kubectl("cp", str(src), f"{NS}/web:/tmp/blob.bin", "-c", "app")
    assert exec_out(c, "web", "app", "wc", "-c", "/tmp/blob.bin").split()[0] == str(len(data))
    back = tmp_path / "back.bin"
    c.kubectl("cp", f"{NS}/web:/tmp/blob.bin", str(back), "-c", "app")
    assert back.read_bytes() == data


def test_port_forward_serves_the_app(pods: Cluster) -> None:
    c = pods
    wait_running(c, "web")
    port = free_port()
    proc = subprocess.Popen(
        c.kubectl_argv("port-forward", "-n", NS, "pod/web", f"{port}:8080"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=c.kubectl_env(),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"Forwarding from 127.0.0.1:{port} -> 8080"), (
            first,
            proc.poll(),
        )
        for _ in range(3):  # each GET is a new stream over the same connection
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as r:
                assert r.read() == b"hello-from-app\n"
    finally:
        proc.terminate()
        proc.wait(10)


def _bytes(quantity: str) -> float:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity)


def test_top_pod_shows_real_usage(pods: Cluster) -> None:
    c = pods
    wait_running(c, "web")
    path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods/web"

    def usage() -> list[str] | None:
        done = c.kubectl("top", "pod", "web", "-n", NS, "--no-headers", check=False)
        row = done.stdout.split()
        return row if done.returncode == 0 and row else None

    # The first figures need a full window of samples (15 s).
    row = wait_for("kubectl top pod web", usage, 60, 2)
    assert row[0] == "web" and re.fullmatch(r"\d+m", row[1]) and re.fullmatch(r"\d+Mi", row[2])
    metrics = json.loads(c.kubectl("get", "--raw", path).stdout)
    memory = {x["name"]: _bytes(x["usage"]["memory"]) for x in metrics["containers"]}
    assert sorted(memory) == ["app", "sidecar"] and all(m > 0 for m in memory.values()), metrics
    containers = c.kubectl("top", "pod", "web", "-n", NS, "--containers", "--no-headers").stdout
    names = sorted(line.split()[1] for line in containers.splitlines())
    assert names == ["app", "sidecar"], containers


# --- restarts ---------------------------------------------------------------------------


def test_oom_killed_and_backed_off(pods: Cluster) -> None:
    c = pods
    seen_backoff = False

    def oom_restarted() -> Obj | None:
        nonlocal seen_backoff
        status = container_status(get_pod(c, "oom"), "hog")
        waiting = (status.get("state") or {}).get("waiting") or {}
        seen_backoff = seen_backoff or waiting.get("reason") == "CrashLoopBackOff"
        last = (status.get("lastState") or {}).get("terminated") or {}
        ok = last.get("reason") == "OOMKilled" and status.get("restartCount", 0) >= 2
        return status if ok and seen_backoff else None

    status = wait_for("OOMKilled, restarted twice, CrashLoopBackOff", oom_restarted, 90)
    assert status["lastState"]["terminated"]["exitCode"] == 137, status
    row = c.kubectl("get", "pod", "oom", "-n", NS, "--no-headers").stdout.split()
    assert int(row[3]) >= 2, row
    described = c.kubectl("describe", "pod", "oom", "-n", NS).stdout
    assert "OOMKilled" in described and "Back-off restarting failed container" in described


# --- deletion ---------------------------------------------------------------------------


def test_delete_runs_prestop_within_grace(pods: Cluster, tmp_path: Path) -> None:
    c = pods
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    manifest = pod(
        "prestop",
        [
            {
                "name": "app",
                "command": sh("while true; do sleep 0.5; done"),
                "lifecycle": {
                    "preStop": {"exec": {"command": ["sh", "-c", "echo bye > /hook/prestop"]}}
                },
                "volumeMounts": [{"name": "hook", "mountPath": "/hook"}],
            }
        ],
        volumes=[{"name": "hook", "hostPath": {"path": str(hook_dir), "type": "Directory"}}],
        terminationGracePeriodSeconds=20,
    )
    apply(c, manifest)
    wait_running(c, "prestop")
    # kubectl's --timeout bounds the wait for the pod to be gone: the grace period.
    out = c.kubectl("delete", "pod", "prestop", "-n", NS, "--timeout=20s").stdout
    assert out.strip() == 'pod "prestop" deleted', out
    assert (hook_dir / "prestop").read_text() == "bye\n"
    done = c.kubectl("get", "pod", "prestop", "-n", NS, check=False)
    assert done.returncode == 1 and "NotFound" in done.stderr, done.stderr


# --- images -----------------------------------------------------------------------------


def _nanokube(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nanokube.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_images_import_and_ls(pods: Cluster, tmp_path: Path) -> None:
    from nanokube.runtime.images.busybox import write_busybox_archive

    c = pods
    archive = write_busybox_archive(tmp_path / "bb.tar", "example.com/tools/busybox:imported")
    data = str(c.data_dir)
    done = _nanokube("images", "--data-dir", data, "import", str(archive))
    assert done.returncode == 0, done.stderr
    assert "example.com/tools/busybox:imported" in done.stdout, done.stdout
    listed = _nanokube("images", "--data-dir", data, "ls").stdout
    rows = [line.split() for line in listed.splitlines()]
    assert rows[0] == ["IMAGE", "TAG", "DIGEST", "IMAGE", "ID", "SIZE"], listed
    repos = {(r[0], r[1]) for r in rows[1:]}
    assert ("example.com/tools/busybox", "imported") in repos, listed
    assert ("docker.io/library/busybox", "latest") in repos, listed
    # The running agent uses what was imported beside it.
    apply(
        c,
        pod(
            "imported",
            [
                {
                    "name": "app",
                    "image": "example.com/tools/busybox:imported",
                    "command": ["sleep", "3600"],
                }
            ],
        ),
    )
    wait_running(c, "imported")
    c.kubectl("delete", "pod", "imported", "-n", NS, "--wait=false")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry on loopback holding the busybox image as ``busybox:1``."""
    import shutil

    if shutil.which("docker-registry") is None:
        pytest.skip("the pull tests need docker-registry (apt-get install docker-registry)")
    sys.path.insert(0, str(RUNTIME_TESTS))
    import imagebuild
    import imageregistry

    from nanokube.runtime.images.busybox import busybox_image

    with imageregistry.registry(tmp_path_factory.mktemp("registry")) as address:
        asyncio.run(imagebuild.push(f"http://{address}", "busybox", "1", busybox_image()))
        yield address


def test_pull_from_loopback_registry(pods: Cluster, registry: str) -> None:
    c = pods
    image = f"{registry}/busybox:1"
    apply(c, pod("pulled", [{"name": "app", "image": image, "command": ["sleep", "3600"]}]))
    running_pod = wait_running(c, "pulled")
    status = container_status(running_pod, "app")
    assert status["image"] == image and status["imageID"].startswith(f"{registry}/busybox@sha256:")
    events = c.kubectl(
        "get", "events", "-n", NS, "--field-selector", "involvedObject.name=pulled"
    ).stdout
    assert f'Successfully pulled image "{image}"' in events, events
    c.kubectl("delete", "pod", "pulled", "-n", NS, "--wait=false")


def test_missing_image_backs_off_with_the_registry_reason(pods: Cluster, registry: str) -> None:
    c = pods
    image = f"{registry}/no-such-image:1"
    apply(c, pod("badimage", [{"name": "app", "image": image, "command": ["true"]}]))
    reasons: list[str] = []

    def backing_off() -> bool:
        status = container_status(get_pod(c, "badimage"), "app")
        reason = ((status.get("state") or {}).get("waiting") or {}).get("reason", "")
        if reason and (not reasons or reasons[-1] != reason):
            reasons.append(reason)
        return "ErrImagePull" in reasons and reasons[-1] == "ImagePullBackOff"

    try:
        wait_for("ErrImagePull then ImagePullBackOff", backing_off, 60)
    except AssertionError as e:
        described = c.kubectl("describe", "pod", "badimage", "-n", NS).stdout
        raise AssertionError(f"{e}\nreasons seen: {reasons}\n{described}") from None
    assert reasons.index("ErrImagePull") < len(reasons) - 1, reasons
    described = c.kubectl("describe", "pod", "badimage", "-n", NS).stdout
    assert f'Failed to pull image "{image}"' in described, described
    assert "manifest unknown" in described.lower() or "not found" in described.lower(), described
    assert "Back-off pulling image" in described, described
    c.kubectl("delete", "pod", "badimage", "-n", NS, "--wait=false")


# --- scale ------------------------------------------------------------------------------


def test_deployment_of_twenty_replicas_runs(pods: Cluster) -> None:
    c = pods
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "many", "namespace": NS},
        "spec": {
            "replicas": 20,
            "selector": {"matchLabels": {"app": "many"}},
            "template": {
                "metadata": {"labels": {"app": "many"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "app",
                            "image": BUSYBOX,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sleep", "3600"],
                        }
                    ],
                },
            },
        },
    }
    apply(c, deployment)
    c.kubectl("rollout", "status", "deployment/many", "-n", NS, "--timeout=120s", timeout=150)
    rows = c.kubectl("get", "pods", "-n", NS, "-l", "app=many", "--no-headers").stdout
    states = [line.split()[1:3] for line in rows.splitlines()]
    assert states == [["1/1", "Running"]] * 20, rows
    ips = json.loads(c.kubectl("get", "pods", "-n", NS, "-l", "app=many", "-o", "json").stdout)[
        "items"
    ]
    assert len({p["status"]["podIP"] for p in ips}) == 20
    c.kubectl("delete", "deployment", "many", "-n", NS)
    wait_for(
        "the Deployment's pods gone",
        lambda: not c.kubectl("get", "pods", "-n", NS, "-l", "app=many", "-o", "name").stdout,
        90,
        1,
    )


# --- the server crashes -----------------------------------------------------------------


def test_kill9_of_the_server_leaves_containers_running(pods: Cluster) -> None:
    c = pods
    before = wait_running(c, "web")
    ip = before["status"]["podIP"]
    ids = {s["name"]: s["containerID"] for s in before["status"]["containerStatuses"]}
    running_before = {x["id"] for x in runc_list(c) if x["status"] == "running"}
    c.kill9()
    running_after = {x["id"] for x in runc_list(c) if x["status"] == "running"}
    assert running_before <= running_after, (running_before, running_after)
    with urllib.request.urlopen(f"http://{ip}:8080/index.html", timeout=5) as resp:
        assert resp.read() == b"hello-from-app\n"
    c.start()

    def readopted() -> Obj | None:
        pod_now = get_pod(c, "web")
        statuses = pod_now["status"].get("containerStatuses") or []
        ok = pod_now["status"].get("phase") == "Running" and all(s["ready"] for s in statuses)
        return pod_now if ok else None

    after = wait_for("web re-adopted after the restart", readopted, 60)
    assert after["status"]["podIP"] == ip
    for s in after["status"]["containerStatuses"]:
        assert s["containerID"] == ids[s["name"]], (s, ids)
        assert s["restartCount"] == 0, s
    assert exec_out(c, "web", "app", "cat", "/shared/fetched") == "hello-from-app\n"
