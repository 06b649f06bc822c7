"""A `StreamingBackend` over local processes and files, for the streaming tests.

exec runs the command as a local subprocess (a pty for a tty, sized by the
resize stream), attach greets and echoes stdin, logs read CRI files under a
directory the test writes, and port-forward dials local TCP servers by a
port map. It is what the kubelet does, minus the containers.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import termios
from collections.abc import AsyncIterator
from pathlib import Path

from nanokube.api import errors
from nanokube.kubelet.streaming.server import PodRef, TerminalSize
from nanokube.runtime.contract import OutputSink

FIRST_RESIZE_WAIT = 5.0  # a tty exec waits this long for the client's first size


class FakeBackend:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.logs = root / "logs"
        self.running = True
        self.ports: dict[int, int] = {}  # pod port -> local port
        self.resizes: list[TerminalSize] = []
        self.calls: list[tuple[str, PodRef, str]] = []

    def log_file(self, container: str, attempt: int) -> Path:
        path = self.logs / container / f"{attempt}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    async def exec(
        self,
        pod: PodRef,
        container: str,
        cmd: list[str],
        *,
        tty: bool,
        stdin: AsyncIterator[bytes] | None,
        stdout: OutputSink | None,
        stderr: OutputSink | None,
        resize: AsyncIterator[TerminalSize] | None,
    ) -> int:
        self.calls.append(("exec", pod, container))
        if tty:
            return await self._exec_tty(cmd, stdin, stdout, resize)
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                cwd=self.root,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            raise errors.BadRequest(f"executable file not found: {cmd[0]}") from None
        assert proc.stdout is not None and proc.stderr is not None

        async def feed() -> None:
            assert proc.stdin is not None and stdin is not None
            async for chunk in stdin:
                proc.stdin.write(chunk)
                await proc.stdin.drain()
            proc.stdin.close()

        async def pump(reader: asyncio.StreamReader, sink: OutputSink | None) -> None:
            while data := await reader.read(65536):
                if sink is not None:
                    await sink(data)

        feeder = asyncio.create_task(feed()) if stdin else None
        try:
            await asyncio.gather(pump(proc.stdout, stdout), pump(proc.stderr, stderr))
            return await proc.wait()
        finally:
            if feeder is not None:
                feeder.cancel()
            if proc.returncode is None:  # cancelled: the server is shutting down
                proc.kill()
                await proc.wait()

    async def _exec_tty(
        self,
        cmd: list[str],
        stdin: AsyncIterator[bytes] | None,
        stdout: OutputSink | None,
        resize: AsyncIterator[TerminalSize] | None,
    ) -> int:
        master, slave = os.openpty()
        sizes = aiter(resize) if resize is not None else None

        def apply(size: TerminalSize) -> None:
            self.resizes.append(size)
            fcntl.ioctl(
                master, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0)
            )

        if sizes is not None:
            first = await asyncio.wait_for(anext(sizes, None), FIRST_RESIZE_WAIT)
            if first is not None:
                apply(first)
        env = {**os.environ, "PS1": "$ ", "TERM": "dumb"}
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=self.root,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[bytes] = asyncio.Queue()
        os.set_blocking(master, False)

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(master)
            out.put_nowait(data)

        loop.add_reader(master, readable)

        async def feed() -> None:
            if stdin is not None:
                async for chunk in stdin:
                    os.write(master, chunk)

        async def follow_sizes() -> None:
            if sizes is not None:
                async for size in sizes:
                    apply(size)

        tasks = [asyncio.create_task(feed()), asyncio.create_task(follow_sizes())]
        try:
            while data := await out.get():
                if stdout is not None:
                    await stdout(data)
            return await proc.wait()
        finally:
            for task in tasks:
                task.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            loop.remove_reader(master)
            os.close(master)

    async def attach(
        self,
        pod: PodRef,
        container: str,
        *,
        tty: bool,
        stdin: AsyncIterator[bytes] | None,
        stdout: OutputSink | None,
        stderr: OutputSink | None,
        resize: AsyncIterator[TerminalSize] | None,
    ) -> None:
        self.calls.append(("attach", pod, container))
        if stdout is not None:
            await stdout(b"attached\n")
        if stdin is not None:
            async for chunk in stdin:
                if stdout is not None:
                    await stdout(chunk.upper())

    async def log_path(self, pod: PodRef, container: str, previous: bool) -> Path:
        attempts = sorted(
            int(p.stem) for p in (self.logs / container).glob("*.log") if p.stem.isdigit()
        )
        if not attempts or (previous and len(attempts) < 2):
            raise errors.NotFound(f'container "{container}" has no log')
        return self.log_file(container, attempts[-2] if previous else attempts[-1])

    async def container_running(self, pod: PodRef, container: str) -> bool:
        return self.running

    async def port_forward(
        self, pod: PodRef, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.calls.append(("portforward", pod, str(port)))
        if port not in self.ports:
            raise ConnectionRefusedError(f"dial tcp 127.0.0.1:{port}: connect: connection refused")
        return await asyncio.open_connection("127.0.0.1", self.ports[port])


async def echo_server() -> tuple[asyncio.Server, int]:
    """A TCP server that answers every byte with itself, prefixed once with `echo:`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"echo:")
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]
