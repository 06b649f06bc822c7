"""Kind lookup by apiVersion+kind and by group+plural, for objects, and the package's
curated public names."""

from __future__ import annotations

import pytest

import nanokube.api.kinds
import nanokube.client
from nanokube.api import errors
from nanokube.client import kinds


def test_lookup_by_kind_and_by_resource() -> None:
    deployment = kinds.by_kind("apps/v1", "Deployment")
    assert deployment is not None and deployment.plural == "deployments"
    assert kinds.by_resource("apps", "deployments") is deployment
    assert kinds.by_resource("", "pods") is kinds.by_kind("v1", "Pod")
    assert kinds.by_kind("apps/v1", "Nothing") is None


def test_for_object() -> None:
    assert kinds.builtin().for_object({"apiVersion": "v1", "kind": "ConfigMap"}).plural == (
        "configmaps"
    )
    with pytest.raises(errors.NotFound) as err:
        kinds.builtin().for_object({"apiVersion": "example.com/v1", "kind": "Widget"})
    assert err.value.message == 'no matches for kind "Widget" in version "example.com/v1"'


def test_an_index_of_custom_kinds() -> None:
    widget = nanokube.api.kinds.Kind(
        group="example.com", version="v1", kind="Widget", plural="widgets", namespaced=True
    )
    index = kinds.KindIndex([widget])
    assert index.by_resource("example.com", "widgets") is widget
    index.remove(widget)
    assert index.by_kind("example.com/v1", "Widget") is None


def test_public_api() -> None:
    assert sorted(nanokube.client.__all__) == sorted(
        [
            "JSON_PATCH",
            "MERGE_PATCH",
            "STRATEGIC_PATCH",
            "Client",
            "EventRecorder",
            "HTTPClient",
            "InProcessClient",
            "Indexer",
            "Informer",
            "LeaderElectionConfig",
            "LeaderElector",
            "Obj",
            "RateLimiter",
            "SharedInformerFactory",
            "ShutDown",
            "WorkQueue",
            "key_of",
            "run_workers",
            "split_key",
        ]
    )
    for name in nanokube.client.__all__:
        assert hasattr(nanokube.client, name)
