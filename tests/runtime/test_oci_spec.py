"""OCI config.json generation (pure; no root needed).

Aspects: capabilities (default set, add/drop, ALL, privileged); user resolution from
securityContext and the image's USER; namespaces joined by path; cgroup v1 resources;
rlimits capped at the host's hard limit; mounts; seccomp RuntimeDefault.
"""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from nanokube.runtime import contract as c
from nanokube.runtime.oci import seccomp, spec

SANDBOX = spec.SandboxView(
    namespaces={"net": "/run/x/net", "ipc": "/run/x/ipc", "uts": "/run/x/uts"},
    hostname="pod",
    etc_files={"/etc/hosts": "/s/hosts", "/etc/resolv.conf": "/s/resolv.conf"},
    shm="/s/shm",
    cgroup_parent="/nanokube/podu",
)


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    return str(tmp_path)


def build(rootfs: str, **kw: object) -> dict:
    config = c.ContainerConfig(name="app", layers=[], command=["sleep", "1"], **kw)  # type: ignore[arg-type]
    return spec.build_spec(config, SANDBOX, rootfs, "/nanokube/podu/cid")


def test_default_capabilities_are_containerds(rootfs: str):
    caps = build(rootfs)["process"]["capabilities"]
    assert caps["bounding"] == spec.DEFAULT_CAPABILITIES
    assert "CAP_SYS_ADMIN" not in caps["effective"]


def test_capabilities_add_drop_all():
    def caps(**kw: object) -> list[str]:
        return spec.capabilities(
            c.ContainerConfig(name="a", layers=[], command=[], security=c.SecurityContext(**kw))  # type: ignore[arg-type]
        )

    assert "CAP_NET_ADMIN" in caps(capabilities_add=["NET_ADMIN"])
    assert "CAP_NET_RAW" not in caps(capabilities_drop=["NET_RAW"])
    assert caps(capabilities_drop=["ALL"], capabilities_add=["CHOWN"]) == ["CAP_CHOWN"]
    assert caps(privileged=True) == spec.ALL_CAPABILITIES
    assert caps(capabilities_add=["ALL"]) == spec.ALL_CAPABILITIES


def test_user_resolution(rootfs: str):
    def user(image_user: str = "", **kw: object) -> dict:
        return build(rootfs, user=image_user, security=c.SecurityContext(**kw))["process"]["user"]  # type: ignore[arg-type]

    assert (user()["uid"], user()["gid"]) == (0, 0)
    assert (user("app")["uid"], user("app")["gid"]) == (1000, 1001)
    assert user("app:staff")["gid"] == 50
    assert (user(run_as_user=1000)["uid"], user(run_as_user=1000)["gid"]) == (1000, 1001)
    assert user(run_as_user=7, run_as_group=8)["gid"] == 8
    assert user("app", run_as_user=5)["uid"] == 5
    with pytest.raises(ValueError, match="unable to find user nobody"):
        user("nobody")


def test_namespaces_joined_by_path_and_absolute_cgroup(rootfs: str):
    linux = build(rootfs)["linux"]
    assert {"type": "network", "path": "/run/x/net"} in linux["namespaces"]
    assert {"type": "pid"} in linux["namespaces"]
    assert linux["cgroupsPath"] == "/nanokube/podu/cid"
    assert linux["maskedPaths"] == spec.MASKED_PATHS


def test_host_network_sandbox_joins_no_network_namespace(rootfs: str):
    view = spec.SandboxView({"ipc": "/run/x/ipc"}, "node", {}, "", "/nanokube/podu")
    config = c.ContainerConfig(name="a", layers=[], command=["true"])
    namespaces = spec.build_spec(config, view, rootfs, "/p/c")["linux"]["namespaces"]
    assert [n["type"] for n in namespaces] == ["pid", "mount", "ipc"]


def test_resources_are_cgroup_v1_values(rootfs: str):
    res = c.resources_from_k8s(cpu_request_milli=250, cpu_limit_milli=500, memory_limit=64 << 20)
    out = build(rootfs, resources=res)["linux"]["resources"]
    assert out["cpu"] == {"shares": 256, "quota": 50_000, "period": 100_000}
    assert out["memory"] == {"limit": 64 << 20, "swap": 64 << 20}


def test_rlimits_never_exceed_host_hard_limit(rootfs: str):
    (nofile,) = build(rootfs)["process"]["rlimits"]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert nofile["type"] == "RLIMIT_NOFILE"
    assert nofile["hard"] == nofile["soft"] <= (hard if hard >= 0 else spec.NOFILE_WANTED)


def test_mounts_bind_pod_files_and_volumes(rootfs: str):
    mounts = build(rootfs, mounts=[c.Mount("/data", "/etc/hosts", readonly=True)])["mounts"]
    by_dest = {m["destination"]: m for m in mounts}
    assert by_dest["/etc/resolv.conf"]["source"] == "/s/resolv.conf"
    assert by_dest["/etc/hosts"]["source"] == "/data"  # a volume wins over the pod file
    assert "ro" in by_dest["/etc/hosts"]["options"]
    assert by_dest["/dev/shm"]["source"] == "/s/shm"


def test_seccomp_runtime_default(rootfs: str):
    secure = build(rootfs, security=c.SecurityContext(seccomp="RuntimeDefault"))
    denied = secure["linux"]["seccomp"]["syscalls"][0]["names"]
    assert "mount" in denied and "kexec_load" in denied and "read" not in denied
    assert "seccomp" not in build(rootfs)["linux"]
    with_admin = seccomp.runtime_default(["CAP_SYS_ADMIN"])["syscalls"][0]["names"]
    assert "mount" not in with_admin and "kexec_load" in with_admin
