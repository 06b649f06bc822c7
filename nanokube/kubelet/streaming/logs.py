"""Reading CRI-format container logs the way `kubectl logs` asks for them.

A CRI log file holds one entry per line: ``TIMESTAMP STREAM TAG CONTENT`` where
TIMESTAMP is RFC 3339 with nanoseconds, STREAM is ``stdout``/``stderr`` and TAG
is ``F`` (the content ends a line) or ``P`` (a partial line: the runtime split a
long line, and the next entry continues it). Upstream's reader
(`pkg/kubelet/kuberuntime/logs/logs.go`) writes each entry's content, adding the
newline for ``F`` entries, prefixed with the entry's timestamp when
``timestamps`` is set; `LogOptions` mirrors its options.

`tailLines` counts file lines from the end, `sinceTime`/`sinceSeconds` keep
entries at or after a time, and `limitBytes` caps the bytes written. With
``follow`` the file is tailed until the container is no longer running (a
restart writes a new file, and the old container has exited by then).
"""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

FOLLOW_POLL = 0.1  # seconds between looks at a followed file that has not grown
RUNNING_CHECK = 1.0  # seconds between asking whether a followed container still runs
_CHUNK = 64 * 1024


@dataclass
class LogOptions:
    follow: bool = False
    tail_lines: int | None = None
    since: float | None = None
    """Unix time; entries older than this are skipped."""
    timestamps: bool = False
    limit_bytes: int | None = None


@dataclass
class Entry:
    timestamp: str
    stream: str
    partial: bool
    content: bytes

    def render(self, timestamps: bool) -> bytes:
        text = self.content if self.partial else self.content + b"\n"
        return self.timestamp.encode() + b" " + text if timestamps else text


def parse_line(line: bytes) -> Entry | None:
    """One CRI line (without its newline); None for a line that is not CRI format."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    content = parts[3] if len(parts) == 4 else b""
    return Entry(parts[0].decode(errors="replace"), parts[1].decode(), parts[2] == b"P", content)


def parse_timestamp(value: str) -> float:
    """RFC 3339 with up to nanoseconds (Python's parser stops at microseconds)."""
    value = value.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    head, dot, rest = value.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        value = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    parsed = datetime.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _tail_offset(f: os.PathLike[str] | str, lines: int) -> int:
    """The file offset where the last `lines` lines start (read backwards in chunks)."""
    with open(f, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        if lines <= 0:
            return end
        pos = end
        found = 0
        # A final newline ends the last line rather than starting an empty one.
        skip_final = True
        while pos > 0:
            size = min(_CHUNK, pos)
            pos -= size
            fh.seek(pos)
            block = fh.read(size)
            idx = len(block)
            while True:
                idx = block.rfind(b"\n", 0, idx)
                if idx < 0:
                    break
                if skip_final and pos + idx == end - 1:
                    skip_final = False
                    continue
                skip_final = False
                found += 1
                if found == lines:
                    return pos + idx + 1
        return 0


async def read_log(
    path: Path, options: LogOptions, running: Callable[[], Awaitable[bool]]
) -> AsyncIterator[bytes]:
    """Yield the rendered log of `path` chunk by chunk, following it if asked."""
    start = 0 if options.tail_lines is None else _tail_offset(path, options.tail_lines)
    remaining = options.limit_bytes
    loop = asyncio.get_running_loop()
    with open(path, "rb") as fh:
        fh.seek(start)
        pending = b""
        last_check = float("-inf")  # the first EOF asks at once: a finished container ends fast
        while True:
            data = fh.read(_CHUNK)
            if data:
                pending += data
                lines = pending.split(b"\n")
                pending = lines.pop()
                out = []
                for line in lines:
                    entry = parse_line(line)
                    if entry is None:
                        continue
                    if (
                        options.since is not None
                        and parse_timestamp(entry.timestamp) < options.since
                    ):
                        continue
                    out.append(entry.render(options.timestamps))
                chunk = b"".join(out)
                if remaining is not None:
                    chunk = chunk[:remaining]
                    remaining -= len(chunk)
                if chunk:
                    yield chunk
                if remaining is not None and remaining <= 0:
                    return
                continue
            if not options.follow:
                return
            now = loop.time()
            if now - last_check >= RUNNING_CHECK:
                last_check = now
                if not await running():
                    # One more read: the container may have written before it exited.
                    if fh.tell() == os.fstat(fh.fileno()).st_size:
                        return
                    continue
            await asyncio.sleep(FOLLOW_POLL)
