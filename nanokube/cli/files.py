"""Writing files that hold secrets: atomically, and never readable by others even briefly."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` through a temp file and a rename, created with `mode`.

    A reader (kubectl, a restarted server) sees the old file or the new one,
    never half of one; a crash leaves at most a stray `.NAME.tmp`.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, mode)  # O_CREAT's mode does not apply to a leftover temp file
        f.write(data)
        f.flush()
        os.fsync(fd)
    os.replace(tmp, path)
