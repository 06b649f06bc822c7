"""An acknowledged sqlite write survives `kill -9` of the writing process.

A child process writes a stream of creates and compare-and-swap updates (with
a compaction now and then) and prints each write once its call returned. The
test kills it with SIGKILL mid-stream, reopens the database and checks that
every acknowledged write is there, the database is intact, and writing goes on
from the right revision; then it does it all again on the same file.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from nanokube.storage.sqlite import SqliteStore

WRITER = """
import asyncio, sys
from nanokube.storage.sqlite import SqliteStore

def ack(line):
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()

async def main():
    store = SqliteStore(sys.argv[1])
    round = sys.argv[2]
    counter = await store.get("/counter") or await store.create("/counter", b"0")
    for i in range(1_000_000):
        key = f"/things/{round}-{i:06d}"
        kv = await store.create(key, key.encode() * 20)
        ack(f"create {key} {kv.mod_revision}")
        counter = await store.update("/counter", str(i).encode(), counter.mod_revision)
        ack(f"update {i} {counter.mod_revision}")
        if i % 100 == 99:
            await store.compact(counter.mod_revision - 50)

asyncio.run(main())
"""


def run_and_kill(db: Path, round: str, after_lines: int) -> list[list[str]]:
    """Run the writer, SIGKILL it once it acknowledged `after_lines` writes; its acknowledgements."""
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), round],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert child.stdout is not None
    lines = []
    for line in child.stdout:
        lines.append(line)
        if len(lines) == after_lines:
            os.kill(child.pid, signal.SIGKILL)
            break
    lines.extend(child.stdout)  # written before it died
    # a line cut short by the kill was not an acknowledgement
    acks = [line.split() for line in lines if line.endswith("\n")]
    assert child.wait() == -signal.SIGKILL
    return acks


async def check(db: Path, acks: list[list[str]], round: str) -> None:
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    store = SqliteStore(db)
    try:
        last_rev = max(int(ack[2]) for ack in acks)
        assert await store.current_revision() >= last_rev
        created = [ack[1] for ack in acks if ack[0] == "create"]
        for key in created:
            kv = await store.get(key)
            assert kv is not None and kv.value == key.encode() * 20
        stored = [kv.key for kv in (await store.list(f"/things/{round}-")).items]
        # at most the one write that was committed but not yet acknowledged is extra
        assert stored[: len(created)] == created and len(stored) - len(created) <= 1
        counter = await store.get("/counter")
        last_update = max(int(ack[1]) for ack in acks if ack[0] == "update")
        assert counter is not None and int(counter.value) >= last_update
        # the store goes on from where it was
        rev = await store.current_revision()
        assert (await store.create(f"/after/{round}", b"x")).mod_revision == rev + 1
    finally:
        await store.close()


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "db" / "state.db"
    for round, after_lines in (("a", 700), ("b", 300)):
        acks = run_and_kill(db, round, after_lines)
        assert len(acks) >= after_lines
        await check(db, acks, round)
