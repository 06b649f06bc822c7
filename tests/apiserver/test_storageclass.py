"""DefaultStorageClass admission: claims without a class get the default one (the newest
when several are marked), an explicit class or `""` is kept, no default changes nothing."""

from __future__ import annotations

from typing import Any

from nanokube.apiserver.server import APIServer
from nanokube.apiserver.storageclass import default_storage_class, pick_default

SCS = "/apis/storage.k8s.io/v1/storageclasses"


def storage_class(name: str, default: bool) -> dict[str, Any]:
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {
        "metadata": {"name": name, "annotations": annotations},
        "provisioner": "rancher.io/local-path",
    }


def claim(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], **spec}}


async def test_claims_get_the_default_class(server: APIServer, client: Any) -> None:
    pvc = claim()
    await default_storage_class(server.resources, pvc)
    assert "storageClassName" not in pvc["spec"]  # no default class yet

    await client.post(SCS, storage_class("slow", default=False))
    await client.post(SCS, storage_class("local-path", default=True))
    pvc = claim()
    await default_storage_class(server.resources, pvc)
    assert pvc["spec"]["storageClassName"] == "local-path"

    explicit = claim(storageClassName="slow")
    await default_storage_class(server.resources, explicit)
    assert explicit["spec"]["storageClassName"] == "slow"
    none = claim(storageClassName="")
    await default_storage_class(server.resources, none)
    assert none["spec"]["storageClassName"] == ""
    beta = claim()
    beta["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": "slow"}
    await default_storage_class(server.resources, beta)
    assert "storageClassName" not in beta["spec"]


def test_the_newest_default_wins() -> None:
    older = {**storage_class("a", True)}
    older["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    newer = {**storage_class("b", True)}
    newer["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    plain = storage_class("c", False)
    chosen = pick_default([older, newer, plain])
    assert chosen is not None and chosen["metadata"]["name"] == "b"
    assert pick_default([plain]) is None
