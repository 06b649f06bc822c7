"""The kubelet's volume manager against a real API server (memory store, in-process client).

Aspects: emptyDir on disk and on tmpfs (size from sizeLimit); hostPath type
checks; configMap and secret files (items, modes, optional, missing) and their
atomic refresh; downwardAPI fields and resources; projected volumes with a
placeholder ServiceAccount token; PVC → PV host path; container mounts
(read-only rules, subPath, subPathExpr, escapes refused); teardown and the
clean-up of orphans after a crash. tmpfs tests need root and are skipped
without it.
"""

from __future__ import annotations

import base64
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support import free_port

from nanokube.api.resources.core import CONFIG_MAP, SECRET
from nanokube.api.resources.core_storage import PERSISTENT_VOLUME, PERSISTENT_VOLUME_CLAIM
from nanokube.apiserver import patching
from nanokube.apiserver.server import APIServer, APIServerConfig, start
from nanokube.client.inprocess import InProcessClient
from nanokube.kubelet import volumes_atomic, volumes_storage
from nanokube.kubelet.volumes import VolumeError, VolumeManager, mounts_below
from nanokube.storage.memory import MemoryStore

Obj = dict[str, Any]
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="tmpfs mounts need root")


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    srv, runner = await start(APIServerConfig(store=MemoryStore(), port=free_port()))
    try:
        yield srv
    finally:
        await srv.cache.stop()
        await runner.cleanup()


@pytest.fixture
def client(server: APIServer) -> InProcessClient:
    return InProcessClient(server.resources, patching.patch)


@pytest.fixture
def manager(client: InProcessClient, tmp_path: Path) -> Any:
    mgr = VolumeManager(
        client, tmp_path / "pods", allocatable=lambda: {"cpu": "2", "memory": "4Gi"}
    )
    yield mgr
    for uid in os.listdir(mgr.pods_dir) if mgr.pods_dir.exists() else ():
        mgr.teardown(uid)


def pod(volumes: list[Obj], containers: list[Obj] | None = None, uid: str = "u-1") -> Obj:
    return {
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": uid,
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": 'say "hi"'},
        },
        "spec": {
            "containers": containers or [{"name": "c", "image": "busybox"}],
            "volumes": volumes,
        },
    }


def read(path: str | Path) -> str:
    return Path(path).read_text()


# --- emptyDir -----------------------------------------------------------------


async def test_empty_dir_on_disk(manager: VolumeManager) -> None:
    vols = await manager.setup(pod([{"name": "scratch", "emptyDir": {}}]))
    path = Path(vols["scratch"].host_path)
    assert path == manager.pods_dir / "u-1/volumes/kubernetes.io~empty-dir/scratch"
    assert path.is_dir() and stat.S_IMODE(path.stat().st_mode) == 0o777
    assert not vols["scratch"].readonly
    assert await manager.setup(pod([{"name": "scratch", "emptyDir": {}}]))  # idempotent


@needs_root
async def test_memory_empty_dir_is_a_sized_tmpfs(manager: VolumeManager) -> None:
    spec = [{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}]
    vols = await manager.setup(pod(spec))
    path = vols["mem"].host_path
    assert mounts_below(path) == [path]
    st = os.statvfs(path)
    assert st.f_blocks * st.f_frsize == 8 * 1024 * 1024
    await manager.setup(pod(spec))
    assert mounts_below(path) == [path]  # mounted once


# --- hostPath -----------------------------------------------------------------


async def test_host_path_types(manager: VolumeManager, tmp_path: Path) -> None:
    made = tmp_path / "made"
    vols = await manager.setup(
        pod([{"name": "d", "hostPath": {"path": str(made), "type": "DirectoryOrCreate"}}])
    )
    assert vols["d"].host_path == str(made) and made.is_dir()
    new_file = tmp_path / "f.txt"
    await manager.setup(
        pod([{"name": "f", "hostPath": {"path": str(new_file), "type": "FileOrCreate"}}])
    )
    assert new_file.is_file()
    await manager.setup(pod([{"name": "f", "hostPath": {"path": str(new_file), "type": "File"}}]))
    await manager.setup(
        pod([{"name": "c", "hostPath": {"path": "/dev/null", "type": "CharDevice"}}])
    )
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s.sock"))
    try:
        await manager.setup(
            pod([{"name": "s", "hostPath": {"path": str(tmp_path / "s.sock"), "type": "Socket"}}])
        )
    finally:
        sock.close()
    cases = [
        ({"path": str(new_file), "type": "Directory"}, "is not a directory"),
        ({"path": str(made), "type": "File"}, "is not a file"),
        ({"path": str(tmp_path / "nope"), "type": "Directory"}, "does not exist"),
        ({"path": str(made), "type": "BlockDevice"}, "is not a block device"),
        ({"path": str(tmp_path / "no/such.txt"), "type": "FileOrCreate"}, "parent"),
        ({"path": "relative", "type": ""}, "must be absolute"),
    ]
    for source, message in cases:
        with pytest.raises(VolumeError, match=message):
            await manager.setup(pod([{"name": "x", "hostPath": source}]))


# --- configMap and secret -------------------------------------------------------


async def test_config_map_files_modes_and_atomic_update(
    manager: VolumeManager, client: InProcessClient
) -> None:
    await client.create(
        CONFIG_MAP,
        {
            "metadata": {"name": "cfg", "namespace": "default"},
            "data": {"a.conf": "one", "b": "two"},
            "binaryData": {"bin": base64.b64encode(b"\x00\x01").decode()},
        },
    )
    spec = [{"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o600}}]
    p = pod(spec)
    vols = await manager.setup(p)
    path = Path(vols["cfg"].host_path)
    assert vols["cfg"].readonly
    assert read(path / "a.conf") == "one" and (path / "bin").read_bytes() == b"\x00\x01"
    assert (path / "a.conf").is_symlink() and os.readlink(path / "a.conf") == "..data/a.conf"
    assert stat.S_IMODE(os.stat(path / "b").st_mode) == 0o600
    first = os.readlink(path / "..data")

    # An unchanged object writes nothing.
    assert await manager.refresh([p]) == []
    assert os.readlink(path / "..data") == first

    # A change swaps ..data; a key that went loses its symlink, a new one gets one.
    held = open(path / "a.conf")  # noqa: SIM115 - a reader during the swap
    await client.update(
        CONFIG_MAP,
        {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a.conf": "uno", "c": "3"}},
    )
    assert await manager.refresh([p]) == [("u-1", "cfg")]
    assert held.read() == "one"  # the old file, whole
    held.close()
    assert os.readlink(path / "..data") != first
    assert read(path / "a.conf") == "uno" and read(path / "c") == "3"
    assert not os.path.lexists(path / "b") and not os.path.exists(path / first)
    hidden = sorted(n for n in os.listdir(path) if n.startswith(".."))
    assert len(hidden) == 2  # ..data and one timestamped directory


async def test_config_map_items_optional_and_missing(
    manager: VolumeManager, client: InProcessClient
) -> None:
    await client.create(
        CONFIG_MAP, {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"k": "v"}}
    )
    items = {"name": "cfg", "items": [{"key": "k", "path": "sub/dir/k.txt", "mode": 0o400}]}
    vols = await manager.setup(pod([{"name": "i", "configMap": items}]))
    path = Path(vols["i"].host_path)
    assert read(path / "sub/dir/k.txt") == "v"
    assert stat.S_IMODE(os.stat(path / "sub/dir/k.txt").st_mode) == 0o400
    assert sorted(os.listdir(path / "sub")) == ["dir"]

    with pytest.raises(VolumeError, match='configmap "gone" not found'):
        await manager.setup(pod([{"name": "m", "configMap": {"name": "gone"}}]))
    vols = await manager.setup(
        pod([{"name": "o", "configMap": {"name": "gone", "optional": True}}])
    )
    assert [n for n in os.listdir(vols["o"].host_path) if not n.startswith("..")] == []
    bad_key = {"name": "cfg", "items": [{"key": "nope", "path": "x"}]}
    with pytest.raises(VolumeError, match="non-existent config key: nope"):
        await manager.setup(pod([{"name": "b", "configMap": bad_key}]))
    escape = {"name": "cfg", "items": [{"key": "k", "path": "../evil"}]}
    with pytest.raises(VolumeError, match="must not"):
        await manager.setup(pod([{"name": "e", "configMap": escape}]))


async def test_secret_volume(manager: VolumeManager, client: InProcessClient) -> None:
    await client.create(
        SECRET,
        {
            "metadata": {"name": "s", "namespace": "default"},
            "data": {"password": base64.b64encode(b"hunter2").decode()},
        },
    )
    vols = await manager.setup(pod([{"name": "sec", "secret": {"secretName": "s"}}]))
    path = vols["sec"].host_path
    assert read(Path(path) / "password") == "hunter2"
    assert "kubernetes.io~secret" in path and vols["sec"].readonly
    if ROOT:
        assert mounts_below(path) == [path]  # on tmpfs: never on disk
    with pytest.raises(VolumeError, match='secret "nope" not found'):
        await manager.setup(pod([{"name": "x", "secret": {"secretName": "nope"}}], uid="u-2"))


# --- downwardAPI and projected -------------------------------------------------


async def test_downward_api(manager: VolumeManager) -> None:
    containers = [
        {"name": "c", "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}
    ]
    items = [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "tier", "fieldRef": {"fieldPath": "metadata.labels['tier']"}},
        {
            "path": "mem",
            "resourceFieldRef": {
                "containerName": "c",
                "resource": "limits.memory",
                "divisor": "1Mi",
            },
        },
        {
            "path": "cpu_m",
            "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu", "divisor": "1m"},
        },
        {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu"}},
        {"path": "cpu_limit", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
    ]
    vols = await manager.setup(pod([{"name": "info", "downwardAPI": {"items": items}}], containers))
    path = Path(vols["info"].host_path)
    assert read(path / "name") == "web" and read(path / "ns") == "default"
    assert read(path / "uid") == "u-1" and read(path / "tier") == "front"
    assert read(path / "labels") == 'app="web"\ntier="front"'
    assert read(path / "annotations") == 'note="say \\"hi\\""'
    assert read(path / "mem") == "64" and read(path / "cpu_m") == "250"
    assert read(path / "cpu") == "1"  # rounded up to whole cores
    assert read(path / "cpu_limit") == "2"  # no limit: the node's allocatable


async def test_projected_with_service_account_token(
    manager: VolumeManager, client: InProcessClient
) -> None:
    await client.create(
        CONFIG_MAP,
        {
            "metadata": {"name": "kube-root-ca.crt", "namespace": "default"},
            "data": {"ca.crt": "PEM"},
        },
    )
    source = {
        "defaultMode": 0o444,
        "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                    ]
                }
            },
        ],
    }
    p = pod([{"name": "kube-api-access", "projected": source}])
    vols = await manager.setup(p)
    path = Path(vols["kube-api-access"].host_path)
    assert read(path / "ca.crt") == "PEM" and read(path / "namespace") == "default"
    token = read(path / "token")
    claims = token.split(".")[1]
    decoded = base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)).decode()
    assert "system:serviceaccount:default:default" in decoded
    assert stat.S_IMODE(os.stat(path / "token").st_mode) == 0o444
    assert await manager.refresh([p]) == []  # the token is reused, not re-issued


# --- persistentVolumeClaim -----------------------------------------------------


async def test_pvc_resolves_to_the_bound_volume_path(
    manager: VolumeManager, client: InProcessClient, tmp_path: Path
) -> None:
    storage = tmp_path / "storage" / "pvc-1_default_data"
    await client.create(
        PERSISTENT_VOLUME,
        {
            "metadata": {"name": "pvc-1"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": str(storage), "type": "DirectoryOrCreate"},
                "claimRef": {"namespace": "default", "name": "data"},
            },
        },
    )
    claim = {
        "metadata": {"name": "data", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await client.create(PERSISTENT_VOLUME_CLAIM, claim)
    spec = [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]
    with pytest.raises(VolumeError, match="is not bound"):
        await manager.setup(pod(spec))
    current = await client.get(PERSISTENT_VOLUME_CLAIM, "data", "default")
    current["spec"]["volumeName"] = "pvc-1"
    await client.update(PERSISTENT_VOLUME_CLAIM, current)
    vols = await manager.setup(pod(spec))
    assert vols["d"].host_path == str(storage) and storage.is_dir()
    ro = [{"name": "d", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}}]
    assert (await manager.setup(pod(ro)))["d"].readonly
    with pytest.raises(VolumeError, match='"nope" not found'):
        await manager.setup(pod([{"name": "d", "persistentVolumeClaim": {"claimName": "nope"}}]))


# --- mounts -------------------------------------------------------------------


async def test_container_mounts(manager: VolumeManager, client: InProcessClient) -> None:
    await client.create(
        CONFIG_MAP, {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"app.conf": "x"}}
    )
    container = {
        "name": "c",
        "env": [{"name": "POD", "value": "web-0"}],
        "volumeMounts": [
            {"name": "scratch", "mountPath": "/data"},
            {"name": "scratch", "mountPath": "/logs", "subPathExpr": "logs/$(POD)"},
            {
                "name": "scratch",
                "mountPath": "/ro",
                "readOnly": True,
                "mountPropagation": "HostToContainer",
            },
            {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
        ],
    }
    p = pod(
        [{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}],
        [container],
    )
    vols = await manager.setup(p)
    mounts = manager.mounts(p, container, vols)
    scratch = vols["scratch"].host_path
    assert [(m.container_path, m.readonly, m.propagation) for m in mounts] == [
        ("/data", False, "private"),
        ("/logs", False, "private"),
        ("/ro", True, "rslave"),
        ("/etc/app.conf", True, "private"),
    ]
    assert mounts[0].host_path == scratch
    assert mounts[1].host_path == os.path.join(scratch, "logs/web-0")
    assert os.path.isdir(mounts[1].host_path)
    # A subPath of a configMap is the file itself, inside the current payload directory.
    assert read(mounts[3].host_path) == "x" and "..data" not in mounts[3].host_path

    os.symlink("/etc", os.path.join(scratch, "escape"))
    bad = {
        "name": "c",
        "volumeMounts": [{"name": "scratch", "mountPath": "/x", "subPath": "escape"}],
    }
    with pytest.raises(VolumeError, match="outside the volume"):
        manager.mounts(p, bad, vols)
    dots = {
        "name": "c",
        "volumeMounts": [{"name": "scratch", "mountPath": "/x", "subPath": "../x"}],
    }
    with pytest.raises(VolumeError, match="without '..'"):
        manager.mounts(p, dots, vols)
    missing = {"name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}
    with pytest.raises(VolumeError, match="not defined"):
        manager.mounts(p, missing, vols)


# --- teardown -----------------------------------------------------------------


async def test_teardown_and_orphans(manager: VolumeManager, client: InProcessClient) -> None:
    await client.create(
        SECRET, {"metadata": {"name": "s", "namespace": "default"}, "data": {"k": "dg=="}}
    )
    spec = [
        {"name": "scratch", "emptyDir": {"medium": "Memory"}},
        {"name": "sec", "secret": {"secretName": "s"}},
    ]
    await manager.setup(pod(spec, uid="keep"))
    await manager.setup(pod(spec, uid="orphan"))
    pod_dir = str(manager.pod_dir("orphan"))
    if ROOT:
        assert len(mounts_below(pod_dir)) == 2

    # A new manager (the agent restarted) removes what no live pod owns.
    again = VolumeManager(client, manager.pods_dir)
    assert again.cleanup_orphans(["keep"]) == ["orphan"]
    assert not os.path.exists(pod_dir) and mounts_below(pod_dir) == []
    assert manager.pod_dir("keep").is_dir()
    again.teardown("keep")
    again.teardown("keep")  # idempotent
    assert not manager.pod_dir("keep").exists()


def test_atomic_writer_rejects_colliding_paths(tmp_path: Path) -> None:
    f = volumes_atomic.FileProjection
    with pytest.raises(volumes_atomic.PayloadError, match="both a file and a directory"):
        volumes_atomic.write(str(tmp_path), {"a": f(b"1"), "a/b": f(b"2")})
    with pytest.raises(volumes_atomic.PayloadError, match="relative"):
        volumes_atomic.write(str(tmp_path), {"/abs": f(b"1")})
    assert volumes_atomic.write(str(tmp_path), {"x": f(b"1")})
    assert not volumes_atomic.write(str(tmp_path), {"x": f(b"1")})
    assert volumes_atomic.write(str(tmp_path), {"x": f(b"1", 0o600)})  # a mode change counts


async def test_storage_cleanup_keeps_named_volumes(client: InProcessClient, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    kept, gone, other = storage / "pvc-1_default_a", storage / "pvc-2_default_b", storage / "notes"
    for d in (kept, gone, other):
        d.mkdir(parents=True)
    await client.create(
        PERSISTENT_VOLUME,
        {
            "metadata": {"name": "pvc-1"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "local": {"path": str(kept)},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/hostname",
                                        "operator": "In",
                                        "values": ["n1"],
                                    }
                                ]
                            }
                        ]
                    }
                },
            },
        },
    )
    assert await volumes_storage.cleanup_storage(client, storage) == [str(gone)]
    assert kept.is_dir() and other.is_dir() and not gone.exists()
    assert await volumes_storage.cleanup_storage(client, tmp_path / "none") == []
