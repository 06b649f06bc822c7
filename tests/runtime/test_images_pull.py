"""Pulling from a real registry (Debian's docker-registry, CNCF distribution 2.8, on
loopback): Docker and OCI manifests, a manifest list (the host platform is chosen),
pinned digests, not-found errors carrying the registry's words, connection failures,
two pulls at once fetching each blob once, basic auth (htpasswd) and bearer-token auth
through a token endpoint."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import imagebuild
import imageregistry
import pytest

from nanokube.runtime.images import ImageStore, PullError

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="image pulls need root (mknod, chown, trusted.* xattrs)"
    ),
    pytest.mark.skipif(
        not os.path.exists(imagebuild.BUSYBOX),
        reason="needs busybox-static (apt-get install busybox-static)",
    ),
    pytest.mark.skipif(
        shutil.which(imageregistry.BINARY) is None,
        reason="needs docker-registry (apt-get install docker-registry)",
    ),
]

USERS = {"alice": "wonderland"}
BUSYBOX = imagebuild.busybox_image()
BUSYBOX_OCI = imagebuild.busybox_image(oci=True)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An open registry holding test/busybox:1 (Docker), test/busybox-oci:1 (OCI) and
    test/multi:1 (a manifest list of arm64 and amd64)."""
    with imageregistry.registry(tmp_path_factory.mktemp("registry")) as address:
        base = f"http://{address}"
        arm64 = imagebuild.build_image(list(imagebuild.busybox_tars()), arch="arm64", cmd=["arm"])

        async def fill() -> None:
            await imagebuild.push(base, "test/busybox", "1", BUSYBOX)
            await imagebuild.push(base, "test/busybox-oci", "1", BUSYBOX_OCI)
            await imagebuild.push(base, "test/multi", arm64.digest, arm64)
            await imagebuild.push(base, "test/multi", BUSYBOX.digest, BUSYBOX)
            async with aiohttp.ClientSession() as http:
                index = imagebuild.index_json(
                    [(arm64, "arm64"), (BUSYBOX, "amd64")], imagebuild.DOCKER_LIST
                )
                await imagebuild.push_manifest(
                    http, base, "test/multi", "1", index, imagebuild.DOCKER_LIST
                )

        asyncio.run(fill())
        yield address


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ImageStore]:
    s = ImageStore(tmp_path / "store")
    yield s
    await s.close()


def assert_busybox(store: ImageStore, ref: str) -> None:
    dirs = store.layers_for(ref)
    assert os.path.exists(os.path.join(dirs[0], "bin/busybox"))
    assert os.path.exists(os.path.join(dirs[1], "etc/layer2"))
    assert store.config_for(ref).cmd == ["sh"]


@pytest.mark.parametrize("repo", ["test/busybox", "test/busybox-oci"])
async def test_pull_docker_and_oci_images(store: ImageStore, registry: str, repo: str) -> None:
    ref = f"{registry}/{repo}:1"
    assert not store.present(ref)
    image = await store.pull(ref)
    expected = BUSYBOX if repo == "test/busybox" else BUSYBOX_OCI
    assert image.id == expected.config_digest
    assert image.repo_tags == (ref,)
    assert image.repo_digests == (f"{registry}/{repo}@{expected.digest}",)
    assert store.present(ref) and store.present(f"{registry}/{repo}@{expected.digest}")
    assert_busybox(store, ref)


async def test_manifest_list_pull_takes_the_host_platform(store: ImageStore, registry: str) -> None:
    image = await store.pull(f"{registry}/test/multi:1")
    assert image.id == BUSYBOX.config_digest
    assert image.manifest == BUSYBOX.digest
    # The repo digest is the list's, as the kubelet reports it in imageID.
    [repo_digest] = image.repo_digests
    assert (
        repo_digest.startswith(f"{registry}/test/multi@sha256:")
        and BUSYBOX.digest not in repo_digest
    )


async def test_pull_by_digest_and_repull_fetches_no_blob_again(
    store: ImageStore, registry: str
) -> None:
    front = imageregistry.Front(registry)
    address = await front.start()
    try:
        image = await store.pull(f"{address}/test/busybox@{BUSYBOX.digest}")
        assert image.repo_tags == () and image.repo_digests == (
            f"{address}/test/busybox@{BUSYBOX.digest}",
        )
        fetched = sum(front.blob_gets().values())
        assert fetched == 3  # config and two layers
        await store.pull(f"{address}/test/busybox:1")
        assert sum(front.blob_gets().values()) == fetched
    finally:
        await front.stop()


async def test_concurrent_pulls_fetch_each_blob_once(store: ImageStore, registry: str) -> None:
    front = imageregistry.Front(registry)
    address = await front.start()
    try:
        refs = [f"{address}/test/busybox:1", f"{address}/test/busybox:1", f"{address}/test/multi:1"]
        images = await asyncio.gather(*(store.pull(r) for r in refs))
        assert len({im.id for im in images}) == 1
        gets = front.blob_gets()
        assert gets and max(gets.values()) == 1, gets
        assert len(os.listdir(store.layers_dir)) == 2
    finally:
        await front.stop()


async def test_missing_image_reports_the_registry_reason(store: ImageStore, registry: str) -> None:
    ref = f"{registry}/test/nope:1"
    with pytest.raises(PullError) as err:
        await store.pull(ref)
    assert err.value.not_found
    message = str(err.value)
    assert message == (
        f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": '
        f"{ref}: not found (MANIFEST_UNKNOWN: manifest unknown)"
    )
    with pytest.raises(PullError, match="MANIFEST_UNKNOWN: manifest unknown") as err:
        await store.pull(f"{registry}/test/busybox:2")
    assert err.value.not_found
    assert store.list_images() == []


async def test_unreachable_registry(store: ImageStore) -> None:
    port = imageregistry.free_port()
    with pytest.raises(PullError, match="failed to do request") as err:
        await store.pull(f"127.0.0.1:{port}/x:1")
    assert not err.value.not_found


async def test_basic_auth(store: ImageStore, tmp_path: Path) -> None:
    with imageregistry.registry(tmp_path / "reg", USERS) as address:
        await imagebuild.push(
            f"http://{address}", "private/bb", "1", BUSYBOX, ("alice", "wonderland")
        )
        ref = f"{address}/private/bb:1"
        with pytest.raises(PullError, match="pull access denied") as err:
            await store.pull(ref)
        assert not err.value.not_found
        with pytest.raises(PullError, match="pull access denied"):
            await store.pull(ref, {address: ("alice", "wrong")})
        image = await store.pull(ref, {address: ("alice", "wonderland")})
        assert image.id == BUSYBOX.config_digest
        assert_busybox(store, ref)


async def test_bearer_token_auth(store: ImageStore, registry: str) -> None:
    front = imageregistry.Front(registry, USERS)
    address = await front.start()
    try:
        ref = f"{address}/test/busybox:1"
        with pytest.raises(PullError, match="bad credentials for token"):
            await store.pull(ref, {address: ("alice", "wrong")})
        await store.pull(ref, {address: ("alice", "wonderland")})
        assert_busybox(store, ref)
        tokens = front.token_requests
        await store.pull(ref, {address: ("alice", "wonderland")})
        assert front.token_requests == tokens  # the token is reused until it expires
    finally:
        await front.stop()


async def test_corrupted_blob_is_refused(store: ImageStore, registry: str) -> None:
    front = imageregistry.Front(registry)
    address = await front.start()
    layer = imagebuild.digest(BUSYBOX.layers[1])
    front.tamper[f"/v2/test/busybox/blobs/{layer}"] = b"x" * len(BUSYBOX.layers[1])
    try:
        with pytest.raises(PullError, match=f"digest mismatch: expected {layer}"):
            await store.pull(f"{address}/test/busybox:1")
        assert not store.blobs.has(layer) and store.list_images() == []
        del front.tamper[f"/v2/test/busybox/blobs/{layer}"]
        await store.pull(f"{address}/test/busybox:1")  # a retry fetches only what is missing
        assert front.blob_gets()[f"/v2/test/busybox/blobs/{layer}"] == 2
    finally:
        await front.stop()
