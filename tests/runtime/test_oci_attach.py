"""Attaching to real runc containers through the shim's attach socket, and terminal
resizes of attach and ``exec -t`` (root, runc, busybox-static, CNI plugins)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_oci_runtime import container, pod, run, wait_state

from nanokube.runtime import contract as c
from nanokube.runtime.oci.runtime import OCIRuntime


class Collector:
    def __init__(self) -> None:
        self.data = b""
        self.changed = asyncio.Event()

    async def __call__(self, data: bytes) -> None:
        self.data += data
        self.changed.set()

    async def wait_for(self, text: bytes) -> None:
        while text not in self.data:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 10)


async def test_attach_feeds_stdin_and_streams_output(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    cid = await run(
        runtime,
        sb.id,
        container(busybox, "cat", ["sh", "-c", "cat; echo done >&2"], stdin=True, stdin_once=True),
    )
    out, err = Collector(), Collector()

    async def source() -> AsyncIterator[bytes]:
        yield b"hello\n"
        await out.wait_for(b"hello\n")  # echoed back while the session is open
        yield b"again\n"

    await asyncio.wait_for(runtime.attach(cid, stdin=source(), stdout=out, stderr=err), 10)
    assert out.data == b"hello\nagain\n" and err.data == b"done\n"
    status = await wait_state(runtime, cid)
    assert status.exit_code == 0  # stdinOnce: the end of the session's stdin closed cat's
    log = Path(status.log_path).read_bytes()
    assert b"stdout F hello\n" in log and b"stderr F done\n" in log


async def test_stdin_stays_open_between_attaches_without_stdin_once(
    runtime: OCIRuntime, busybox: Path
):
    sb = await runtime.create_sandbox(pod())
    cid = await run(runtime, sb.id, container(busybox, "cat", ["cat"], stdin=True))
    for word in (b"one\n", b"two\n"):
        out = Collector()

        async def source(word: bytes = word, out: Collector = out) -> AsyncIterator[bytes]:
            yield word
            await out.wait_for(word)

        session = asyncio.create_task(runtime.attach(cid, stdin=source(), stdout=out))
        await out.wait_for(word)
        session.cancel()
        with pytest.raises(asyncio.CancelledError):
            await session
    assert (await runtime.container_status(cid)).state == "running"


async def test_attach_to_tty_container_applies_resize(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    cid = await run(runtime, sb.id, container(busybox, "sh", ["sh"], stdin=True, tty=True))
    resized = asyncio.Event()

    async def sizes() -> AsyncIterator[tuple[int, int]]:
        yield (100, 30)
        resized.set()

    async def source() -> AsyncIterator[bytes]:
        await resized.wait()
        yield b"stty size; exit 3\n"

    out = Collector()
    await asyncio.wait_for(runtime.attach(cid, stdin=source(), stdout=out, resize=sizes()), 10)
    assert b"30 100" in out.data
    assert (await wait_state(runtime, cid)).exit_code == 3


async def test_attach_to_exited_container_fails(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    cid = await run(runtime, sb.id, container(busybox, "quick", ["true"]))
    await wait_state(runtime, cid)
    with pytest.raises(c.RuntimeFailure):
        await runtime.attach(cid)


async def test_exec_tty_applies_resize(runtime: OCIRuntime, busybox: Path):
    sb = await runtime.create_sandbox(pod())
    cid = await run(runtime, sb.id, container(busybox, "app", ["sleep", "1000"]))
    out = Collector()
    resized = asyncio.Event()

    async def sizes() -> AsyncIterator[tuple[int, int]]:
        yield (90, 20)
        resized.set()

    async def source() -> AsyncIterator[bytes]:
        await resized.wait()
        yield b"go\n"

    code = await asyncio.wait_for(
        runtime.exec(
            cid,
            ["sh", "-c", "read x; stty size"],
            tty=True,
            stdin=source(),
            stdout=out,
            resize=sizes(),
        ),
        10,
    )
    assert code == 0 and b"20 90" in out.data
