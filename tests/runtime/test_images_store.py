"""The store's bookkeeping: finding images by name, id, prefix and digest; `rm`
(untag vs delete, in-use refusal, shared layers kept); `gc` (LRU order, in-use and
young images kept, stops once enough is freed); crash leftovers; the record survives
a new store instance (an agent restart)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import imagebuild
import pytest

from nanokube.runtime.images import ImageInUse, ImageNotFound, ImageStore
from nanokube.runtime.images import store as store_module

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="image store tests need root (mknod, chown, trusted.* xattrs)"
    ),
]


def base_layer() -> bytes:
    t = imagebuild.TarBuilder()
    t.dir("etc")
    t.file("etc/os-release", b"ID=test\n")
    return t.done()


def top_layer(name: str) -> bytes:
    t = imagebuild.TarBuilder()
    t.file(name, name.encode() * 1000)
    return t.done()


BUSYBOX = imagebuild.build_image([base_layer(), top_layer("busybox")])
"""Small stand-ins (the store's bookkeeping does not care what the layers hold):
"busybox" with two tags, and app1 and app2 sharing its bottom layer."""


@pytest.fixture
async def store(tmp_path: Path) -> ImageStore:
    s = ImageStore(tmp_path / "store")
    archive = imagebuild.write_docker_archive(
        tmp_path / "all.tar",
        [
            (BUSYBOX, ["busybox:latest", "busybox:1.35"]),
            (imagebuild.build_image([base_layer(), top_layer("app1")]), ["app1:v1"]),
            (imagebuild.build_image([base_layer(), top_layer("app2")]), ["app2:v1"]),
        ],
    )
    await s.import_archive(archive)
    return s


async def test_lookup_by_name_id_prefix_and_digest(store: ImageStore) -> None:
    bb = store.get("busybox")
    assert bb.id == BUSYBOX.config_digest
    assert store.get(bb.id) == store.get(bb.id[7:]) == store.get(bb.id[7:19]) == bb
    assert store.get("docker.io/library/busybox:1.35") == bb
    assert store.present("busybox:1.35") and not store.present("busybox:nope")
    with pytest.raises(ImageNotFound, match='image "nope" not found'):
        store.get("nope")
    assert [im.ref for im in store.list_images()] == [
        "docker.io/library/app1:v1",
        "docker.io/library/app2:v1",
        "docker.io/library/busybox:1.35",
    ]
    assert bb.size == len(base_layer()) + len(top_layer("busybox"))


async def test_rm_untags_then_deletes_keeping_shared_layers(store: ImageStore) -> None:
    bb = store.get("busybox")
    shared = store.layers_for(bb)[0]
    assert await store.remove("busybox:1.35") == []  # another tag remains: only untagged
    assert store.get("busybox").repo_tags == ("docker.io/library/busybox:latest",)
    assert await store.remove("busybox") == [bb.id]
    assert not store.present("busybox")
    assert not store.blobs.has(bb.id)
    assert not os.path.exists(store.layers_for(bb)[1])
    assert os.path.isdir(shared)  # app1 and app2 still use it
    assert store.present("app1:v1")
    with pytest.raises(ImageNotFound):
        await store.remove("busybox")


async def test_rm_refuses_an_image_in_use(store: ImageStore) -> None:
    app1 = store.get("app1:v1")
    with pytest.raises(ImageInUse, match="in use"):
        await store.remove("app1:v1", in_use=lambda im: im.id == app1.id)
    assert store.present("app1:v1")
    assert await store.remove(app1.id, in_use=lambda im: False) == [app1.id]


async def test_gc_frees_least_recently_used_unused_images(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    bb, app1, app2 = store.get("busybox"), store.get("app1:v1"), store.get("app2:v1")
    store.mark_used("app2:v1")  # just imported: a use this soon is not recorded again
    assert store.get("app2:v1").last_used == app2.last_used
    monkeypatch.setattr(store_module, "USE_RESOLUTION", 0.0)
    store.mark_used("app1:v1")
    time.sleep(0.01)
    store.mark_used("busybox")
    assert store.get("busybox").last_used > store.get("app1:v1").last_used > app2.last_used
    before = store.usage()
    # app2 is the least recently used but in use; app1 is next.
    result = await store.gc(in_use={"app2:v1"}, bytes_to_free=1)
    assert result.removed == [app1.id]
    assert result.freed > 0 and store.usage() == before - result.freed
    assert store.present("busybox") and store.present("app2:v1")
    # Freeing more than there is removes every unused image, and only those.
    result = await store.gc(in_use={app2.id}, bytes_to_free=10**12)
    assert result.removed == [bb.id]
    assert [im.id for im in store.list_images()] == [app2.id]
    assert store.present("app2:v1")


async def test_gc_keeps_images_used_within_min_age(store: ImageStore) -> None:
    result = await store.gc(in_use=set(), bytes_to_free=10**12, min_age=3600)
    assert result.removed == [] and len(store.list_images()) == 3


async def test_record_survives_a_restart_and_leftovers_are_cleaned(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (store.layers_dir / f".tmp-{dead.pid}-half-unpacked").mkdir()
    (store.layers_dir / f".tmp-{os.getpid()}-in-progress").mkdir()
    (store.tmp.parent / str(dead.pid)).mkdir()
    (store.tmp.parent / str(dead.pid) / "blob-partial").write_bytes(b"x")
    orphan = store.blobs.put(b"orphan blob")
    reopened = ImageStore(store.root)
    assert [im.id for im in reopened.list_images()] == [im.id for im in store.list_images()]
    # Work directories of dead processes go; those of live ones stay.
    assert not (store.layers_dir / f".tmp-{dead.pid}-half-unpacked").exists()
    assert not (store.tmp.parent / str(dead.pid)).exists()
    assert (store.layers_dir / f".tmp-{os.getpid()}-in-progress").exists()
    assert reopened.present("busybox")
    # Orphaned content goes only once old enough not to belong to a pull in progress.
    await reopened.gc(in_use=set(), bytes_to_free=0)
    assert reopened.blobs.has(orphan)
    monkeypatch.setattr(store_module, "ORPHAN_AGE", -1.0)
    result = await reopened.gc(in_use=set(), bytes_to_free=0)
    assert not reopened.blobs.has(orphan) and result.freed == len(b"orphan blob")
    assert len(reopened.list_images()) == 3


@pytest.mark.skipif(
    "overlay" not in open("/proc/filesystems").read(), reason="needs overlayfs in /proc/filesystems"
)
async def test_a_mounted_image_is_never_deleted(store: ImageStore, tmp_path: Path) -> None:
    from nanokube.runtime.oci import linux

    root = tmp_path / "rootfs"
    layers = store.layers_for("app1:v1")
    linux.mount_overlay(layers, str(tmp_path / "u"), str(tmp_path / "w"), str(root))
    try:
        assert store_module.mounted_layers(store.layers_dir) == {Path(d).name for d in layers}
        with pytest.raises(ImageInUse):
            await store.remove("app1:v1")  # no in_use predicate: the mount table decides
        result = await store.gc(in_use=set(), bytes_to_free=10**12)
        assert store.get("app1:v1").id not in result.removed
        assert all(os.path.isdir(d) for d in layers)
    finally:
        linux.umount(str(root))
    assert await store.remove("app1:v1")


async def test_gc_waits_while_an_import_runs(store: ImageStore, tmp_path: Path) -> None:
    archive = imagebuild.write_docker_archive(
        tmp_path / "more.tar",
        [(imagebuild.build_image([base_layer(), top_layer("app3")]), ["app3:v1"])],
    )
    importing = asyncio.create_task(store.import_archive(archive))
    await asyncio.sleep(0)  # the import has started
    assert await store.gc(in_use=set(), bytes_to_free=10**12) == store_module.GCResult([], 0)
    await importing
    assert len((await store.gc(in_use=set(), bytes_to_free=10**12)).removed) == 4
