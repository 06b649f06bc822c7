"""The declarations of every built-in kind, one module per API group (or per large kind).

Wired explicitly here rather than self-registered at import time.
"""

from __future__ import annotations

from nanokube.api.kinds import Kind
from nanokube.api.resources import apps, batch, core, groups


def builtin_kinds() -> list[Kind]:
    return [*core.KINDS, *apps.KINDS, *batch.KINDS, *groups.KINDS]
