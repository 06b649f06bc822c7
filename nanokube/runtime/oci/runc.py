"""Calling ``runc``: one-shot commands and ``runc exec`` with streamed I/O.

``runc create`` is not here: the shim runs it, so that the container's stdio belongs
to the shim from the start.

``runc exec`` reuses the container's process spec (env, cwd, user, capabilities,
seccomp) with new args. For a tty the agent hands runc the slave side of a pty of its
own: runc then allocates the container-side pty and copies between the two, and the
agent reads and writes the master. runc exits with the exec'd process's exit code.
A terminal resize is set on that master (``TIOCSWINSZ``) and runc is sent ``SIGWINCH``,
on which it copies its own terminal's size to the container's pty (the agent's pty is
not runc's controlling terminal, so the kernel would not signal it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import struct
import termios
from collections.abc import AsyncIterator

from nanokube.runtime.contract import OutputSink, RuntimeFailure

log = logging.getLogger(__name__)


class Runc:
    def __init__(self, binary: str, root: str) -> None:
        self.binary = binary
        self.root = root

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.root, *args]

    async def run(self, *args: str, check: bool = True) -> tuple[int, str]:
        """Run a runc subcommand; returns (status, stderr text)."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        text = err.decode(errors="replace").strip()
        status = proc.returncode or 0
        if check and status != 0:
            raise RuntimeFailure(f"runc {args[0]} failed: {text}")
        return status, text

    async def exec(
        self,
        container_id: str,
        cmd: list[str],
        *,
        tty: bool,
        stdin: AsyncIterator[bytes] | None,
        stdout: OutputSink | None,
        stderr: OutputSink | None,
        resize: AsyncIterator[tuple[int, int]] | None = None,
    ) -> int:
        argv = self.argv("exec", *(["-t"] if tty else []), container_id, *cmd)
        if tty:
            return await self._exec_tty(argv, stdin, stdout, resize)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        feeder = None
        if stdin is not None:
            feeder = asyncio.create_task(_feed(stdin, proc.stdin))
        try:
            await asyncio.gather(_pump(proc.stdout, stdout), _pump(proc.stderr, stderr))
            status = await proc.wait()
        except BaseException:
            _forward_then_kill(proc)
            raise
        finally:
            if feeder is not None:
                feeder.cancel()
        return status

    async def _exec_tty(
        self,
        argv: list[str],
        stdin: AsyncIterator[bytes] | None,
        stdout: OutputSink | None,
        resize: AsyncIterator[tuple[int, int]] | None,
    ) -> int:
        master, slave = os.openpty()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
            )
        finally:
            os.close(slave)
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes] = asyncio.Queue()
        os.set_blocking(master, False)

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EIO: every slave fd is closed
                data = b""
            if not data:
                loop.remove_reader(master)
            chunks.put_nowait(data)

        async def deliver() -> None:
            while data := await chunks.get():
                if stdout is not None:
                    await stdout(data)

        loop.add_reader(master, readable)
        delivery = loop.create_task(deliver())
        helpers = []
        if stdin is not None:
            helpers.append(loop.create_task(_feed_fd(stdin, master)))
        if resize is not None:
            helpers.append(loop.create_task(_resize(resize, master, proc)))
        try:
            status = await proc.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(delivery), 1.0)
        except BaseException:
            _forward_then_kill(proc)
            raise
        finally:
            for helper in helpers:
                helper.cancel()
            delivery.cancel()
            loop.remove_reader(master)
            os.close(master)
        return status


async def _pump(reader: asyncio.StreamReader, sink: OutputSink | None) -> None:
    while data := await reader.read(65536):
        if sink is not None:
            await sink(data)


async def _feed(source: AsyncIterator[bytes], writer: asyncio.StreamWriter | None) -> None:
    assert writer is not None
    try:
        async for chunk in source:
            writer.write(chunk)
            await writer.drain()
    except (BrokenPipeError, ConnectionResetError):
        return
    writer.close()


async def _feed_fd(source: AsyncIterator[bytes], fd: int) -> None:
    async for chunk in source:
        while chunk:
            try:
                chunk = chunk[os.write(fd, chunk) :]
            except BlockingIOError:
                await asyncio.sleep(0.01)
            except OSError:
                return


async def _resize(
    sizes: AsyncIterator[tuple[int, int]], master: int, proc: asyncio.subprocess.Process
) -> None:
    async for width, height in sizes:
        size = struct.pack("HHHH", height, width, 0, 0)
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)
        except OSError:  # the exec ended
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGWINCH)


def _forward_then_kill(proc: asyncio.subprocess.Process) -> None:
    """runc forwards SIGTERM to the exec'd process; SIGKILL would orphan it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
