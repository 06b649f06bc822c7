"""Pure Deployment rules: the template hash, revisions and their history, surge and
unavailability rounding, how far a new ReplicaSet may grow, proportional shares."""

from __future__ import annotations

from typing import Any

import pytest

from nanokube.controllers import deployment_util as du

Obj = dict[str, Any]


def deployment(
    replicas: int = 10, surge: Any = "25%", unavailable: Any = "25%", **notes: str
) -> Obj:
    return {
        "metadata": {"name": "web", "annotations": dict(notes)},
        "spec": {
            "replicas": replicas,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
            },
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}},
        },
    }


def rs(
    replicas: int,
    available: int = 0,
    observed: int | None = None,
    notes: dict[str, str] | None = None,
) -> Obj:
    return {
        "metadata": {"name": "rs", "annotations": dict(notes or {})},
        "spec": {"replicas": replicas},
        "status": {
            "replicas": replicas if observed is None else observed,
            "availableReplicas": available,
        },
    }


def test_hash_is_deterministic_safe_and_depends_on_template_and_collisions() -> None:
    template = deployment()["spec"]["template"]
    reordered = {"spec": template["spec"], "metadata": template["metadata"]}
    first = du.compute_hash(template)
    assert first == du.compute_hash(reordered)
    assert set(first) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert du.compute_hash(template, 1) != first
    changed = {**template, "metadata": {"labels": {"app": "web", "v": "2"}}}
    assert du.compute_hash(changed) != first
    assert du.safe_encode("0123456789") == "456789bcdf"


def test_templates_are_equal_ignoring_the_hash_label() -> None:
    template = deployment()["spec"]["template"]
    hashed = {**template, "metadata": {"labels": {"app": "web", du.HASH_LABEL: "abc"}}}
    assert du.equal_ignore_hash(template, hashed)
    assert not du.equal_ignore_hash(template, {**template, "spec": {"containers": [{"name": "x"}]}})


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        (10, "25%", "25%", (3, 2)),  # 2.5: surge rounds up, unavailable down
        (3, "25%", "25%", (1, 0)),
        (4, 0, 0, (0, 1)),  # never both zero
        (4, 2, 1, (2, 1)),
        (1, "100%", "0%", (1, 0)),
    ],
)
def test_fenceposts(replicas: int, surge: Any, unavailable: Any, expected: tuple[int, int]) -> None:
    assert du.resolve_fenceposts(deployment(replicas, surge, unavailable)) == expected


def test_max_unavailable_is_capped_by_replicas_and_zero_for_recreate() -> None:
    assert du.max_unavailable(deployment(2, 0, 5)) == 2
    recreate = deployment()
    recreate["spec"]["strategy"] = {"type": "Recreate"}
    assert du.max_unavailable(recreate) == 0 and du.max_surge(recreate) == 0


def test_new_replica_set_grows_within_the_surge() -> None:
    d = deployment(10, 3, 2)
    old, new = rs(10, 10), rs(0)
    assert du.new_rs_new_replicas(d, [old, new], new) == 3
    old, new = rs(8, 8), rs(5)
    assert du.new_rs_new_replicas(d, [old, new], new) == 5  # 13 = 10 + 3: no room
    old, new = rs(2, 2), rs(9)
    assert du.new_rs_new_replicas(d, [old, new], new) == 10  # never beyond replicas
    # Pods an old ReplicaSet has not yet reported gone keep their slot.
    old, new = rs(5, 5, observed=7), rs(5)
    assert du.new_rs_new_replicas(d, [old, new], new) == 6


def test_revisions_and_history() -> None:
    d = deployment(3, **{"kubernetes.io/change-cause": "v2", du.REVISION: "9"})
    new = rs(0)
    assert du.set_new_rs_annotations(d, new, "4", exists=False)
    notes = new["metadata"]["annotations"]
    assert notes[du.REVISION] == "4"
    assert notes["kubernetes.io/change-cause"] == "v2"
    assert (notes[du.DESIRED_REPLICAS], notes[du.MAX_REPLICAS]) == ("3", "4")
    assert du.REVISION_HISTORY not in notes
    # Rolled back to: the old number moves into the history.
    assert du.set_new_rs_annotations(d, new, "6", exists=True)
    assert (notes[du.REVISION], notes[du.REVISION_HISTORY]) == ("6", "4")
    assert du.set_new_rs_annotations(d, new, "8", exists=True)
    assert notes[du.REVISION_HISTORY] == "4,6"
    assert not du.set_new_rs_annotations(d, new, "8", exists=True)
    assert du.max_revision([new, rs(0, notes={du.REVISION: "2"})]) == 8


def test_proportional_shares_follow_the_recorded_maximum() -> None:
    d = deployment(15, 3, 0)  # resized from 10 (max 13) to 15 (max 18): 5 more pods
    a = rs(8, notes={du.MAX_REPLICAS: "13"})
    b = rs(5, notes={du.MAX_REPLICAS: "13"})
    share_a = du.proportion(a, d, 5, 0)
    share_b = du.proportion(b, d, 5, share_a)
    assert (share_a, share_b) == (3, 2)
    assert du.proportion(rs(0), d, 5, 0) == 0


def test_active_or_latest() -> None:
    old = [rs(0), rs(3)]
    assert du.find_active_or_latest(None, old) is old[1]
    new = rs(2)
    assert du.find_active_or_latest(new, old) is None  # two active: scale proportionally
    assert du.find_active_or_latest(new, [rs(0)]) is new
