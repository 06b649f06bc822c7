"""CRI log reading: entry parsing, partial lines, timestamps, tail, since, limit, follow."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nanokube.kubelet.streaming import logs

LOG = (
    b"2024-01-02T03:04:05.000000001Z stdout F first\n"
    b"2024-01-02T03:04:06.000000000Z stderr P par\n"
    b"2024-01-02T03:04:06.100000000Z stderr F tial\n"
    b"2024-01-02T03:04:07Z stdout F \n"
    b"2024-01-02T03:04:08.5Z stdout F last\n"
)


async def read(path: Path, running: bool = False, **options: object) -> bytes:
    async def is_running() -> bool:
        return running

    opts = logs.LogOptions(**options)  # type: ignore[arg-type]
    return b"".join([chunk async for chunk in logs.read_log(path, opts, is_running)])


def test_parse_line() -> None:
    entry = logs.parse_line(b"2024-01-02T03:04:05.123456789Z stderr P a b c")
    assert entry == logs.Entry("2024-01-02T03:04:05.123456789Z", "stderr", True, b"a b c")
    assert logs.parse_line(b"2024-01-02T03:04:05Z stdout F") == logs.Entry(
        "2024-01-02T03:04:05Z", "stdout", False, b""
    )
    assert logs.parse_line(b"garbage") is None


def test_parse_timestamp_keeps_sub_second_precision() -> None:
    base = logs.parse_timestamp("2024-01-02T03:04:05Z")
    assert abs(logs.parse_timestamp("2024-01-02T03:04:05.123456789Z") - base - 0.123456) < 1e-6
    assert logs.parse_timestamp("2024-01-02T04:04:05+01:00") == base


async def test_partial_lines_join(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(LOG)
    assert await read(path) == b"first\npartial\n\nlast\n"


async def test_timestamps_prefix_each_entry(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(LOG)
    out = await read(path, timestamps=True, tail_lines=2)
    assert out == b"2024-01-02T03:04:07Z \n2024-01-02T03:04:08.5Z last\n"


async def test_tail_lines_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    lines = [b"2024-01-02T03:04:05Z stdout F line %05d" % i for i in range(20000)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert await read(path, tail_lines=3) == b"line 19997\nline 19998\nline 19999\n"
    assert await read(path, tail_lines=0) == b""
    assert (await read(path, tail_lines=50000)).count(b"\n") == 20000


async def test_since_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(LOG)
    since = logs.parse_timestamp("2024-01-02T03:04:06.05Z")
    assert await read(path, since=since) == b"tial\n\nlast\n"
    assert await read(path, limit_bytes=7) == b"first\np"


async def test_follow_until_the_container_stops(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(b"2024-01-02T03:04:05Z stdout F one\n")
    running = True

    async def is_running() -> bool:
        return running

    chunks = logs.read_log(path, logs.LogOptions(follow=True), is_running)
    assert await anext(chunks) == b"one\n"
    with path.open("ab") as f:
        f.write(b"2024-01-02T03:04:06Z stdout F tw")
    waiting = asyncio.ensure_future(anext(chunks))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # half a line is not a line yet
    with path.open("ab") as f:
        f.write(b"o\n")
    assert await asyncio.wait_for(waiting, 5) == b"two\n"
    running = False
    assert [c async for c in chunks] == []


async def test_follow_of_a_stopped_container_ends_at_once(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(LOG)
    assert await asyncio.wait_for(read(path, follow=True), 5) == b"first\npartial\n\nlast\n"
