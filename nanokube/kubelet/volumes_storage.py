"""Removing local-path volume directories whose PersistentVolume is gone.

The local-path provisioner (`nanokube.controllers.localpath`) deletes a
Released volume of reclaim policy Delete, but the directory lives on a node:
as its docstring says, the node agent removes directories of its storage
directory (`DATA_DIR/storage`, named `pvc-<uid>_<namespace>_<name>`) that no
PersistentVolume names any more. Upstream's local-path provisioner runs a
helper pod on the node for the same job.

Only `pvc-*` directories are considered, and only after a successful list of
every PersistentVolume: a failed list deletes nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from nanokube.api.resources.core_storage import PERSISTENT_VOLUME
from nanokube.client.interface import Client

log = logging.getLogger(__name__)


async def cleanup_storage(client: Client, storage_dir: str | os.PathLike[str]) -> list[str]:
    """Delete `pvc-*` directories under `storage_dir` that no PersistentVolume's
    `hostPath.path` or `local.path` names; the paths removed."""
    root = Path(storage_dir)
    if not root.is_dir():
        return []
    named = set()
    for pv in (await client.list(PERSISTENT_VOLUME)).get("items") or ():
        spec = pv.get("spec") or {}
        path = (spec.get("hostPath") or {}).get("path") or (spec.get("local") or {}).get("path")
        if path:
            named.add(os.path.realpath(path))
    removed = []
    for entry in sorted(root.iterdir()):
        if not entry.name.startswith("pvc-") or entry.is_symlink() or not entry.is_dir():
            continue
        if os.path.realpath(entry) in named:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(str(entry))
        log.info("removed the directory of a deleted volume path=%s", entry)
    return removed
