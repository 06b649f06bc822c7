"""What the OCI runtime persists about each sandbox and container, and where.

Everything the runtime knows is in files, so a new agent process re-adopts what the
previous one started simply by reading them (see `OCIRuntime.recover`). Layout:

- ``STATE/sandboxes/ID/``: ``sandbox.json``, the pod's ``hosts``, ``resolv.conf``,
  ``hostname``, and ``shm/`` (the pod's shared ``/dev/shm``, a tmpfs)
- ``STATE/netns/ID/{net,ipc,uts}``: the pinned namespaces
- ``STATE/containers/ID/``: ``container.json``, the bundle (``config.json``,
  ``rootfs/`` = the overlay mount), the shim's ``pid``, ``exit.json``, ``runc.log``
- ``DATA/containers/ID/{upper,work}``: the container's writable layer
- ``STATE/runc``: runc's own ``--root``

Records are written atomically (temporary file + rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from nanokube.runtime.contract import (
    ContainerConfig,
    DNSConfig,
    Mount,
    PortMapping,
    Resources,
    SandboxConfig,
    SecurityContext,
)


@dataclass
class SandboxRecord:
    id: str
    config: SandboxConfig
    created_at: float
    state: str = "creating"
    """``creating`` until fully set up (a crash then means: tear down), ``ready``,
    ``notready`` once stopped."""
    ip: str = ""
    namespaces: dict[str, str] = field(default_factory=dict)
    cgroup_parent: str = ""
    hostname: str = ""


@dataclass
class ContainerRecord:
    id: str
    sandbox_id: str
    config: ContainerConfig
    created_at: float
    log_path: str
    cgroups_path: str
    started_at: float | None = None
    pid: int = 0
    shim_pid: int = 0
    """Alive for as long as the container has not been recorded as exited."""


def write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.rename(tmp, path)


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def save_sandbox(path: str, record: SandboxRecord) -> None:
    write_json(path, asdict(record))


def load_sandbox(path: str) -> SandboxRecord:
    data = read_json(path)
    cfg = data["config"]
    config = SandboxConfig(
        **{
            **cfg,
            "port_mappings": [PortMapping(**p) for p in cfg["port_mappings"]],
            "dns": DNSConfig(**cfg["dns"]) if cfg["dns"] else None,
        }
    )
    return SandboxRecord(**{**data, "config": config})


def save_container(path: str, record: ContainerRecord) -> None:
    write_json(path, asdict(record))


def load_container(path: str) -> ContainerRecord:
    data = read_json(path)
    cfg = data["config"]
    config = ContainerConfig(
        **{
            **cfg,
            "mounts": [Mount(**m) for m in cfg["mounts"]],
            "resources": Resources(**cfg["resources"]),
            "security": SecurityContext(**cfg["security"]),
        }
    )
    return ContainerRecord(**{**data, "config": config})
