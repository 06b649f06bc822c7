"""Kubernetes rules the contract module holds (pure).

Aspects: command/args over the image's entrypoint/cmd; env merging; CPU and memory
conversions to cgroup values.
"""

from __future__ import annotations

from nanokube.runtime import contract as c

IMAGE = c.ImageConfig(entrypoint=["/entry"], cmd=["--default"], env=["PATH=/bin", "A=image"])


def test_resolve_command_follows_kubernetes():
    assert c.resolve_command(IMAGE, [], []) == ["/entry", "--default"]
    assert c.resolve_command(IMAGE, [], ["--mine"]) == ["/entry", "--mine"]
    assert c.resolve_command(IMAGE, ["/bin/sh"], []) == ["/bin/sh"]
    assert c.resolve_command(IMAGE, ["/bin/sh"], ["-c", "x"]) == ["/bin/sh", "-c", "x"]


def test_merge_env_container_wins():
    assert c.merge_env(IMAGE, {"A": "pod", "B": "1"}) == {"PATH": "/bin", "A": "pod", "B": "1"}


def test_resources_from_k8s():
    r = c.resources_from_k8s(cpu_request_milli=100, cpu_limit_milli=None, memory_limit=None)
    assert (r.cpu_shares, r.cpu_quota, r.memory_limit) == (102, None, None)
    best_effort = c.resources_from_k8s(None, None, None)
    assert best_effort.cpu_shares == 2
    limited = c.resources_from_k8s(None, 1, 1 << 20)
    assert (limited.cpu_shares, limited.cpu_quota, limited.memory_limit) == (2, 1000, 1 << 20)
