"""The streaming server's backend over the runtime: logs, exec and port-forward of a pod.

`streaming.server.StreamingBackend` names pods and containers as the API
does; the runtime knows sandboxes and container ids. This backend finds a
pod's sandbox by namespace, name (and uid when the path carries one) and the
container by name, newest attempt first, then calls the runtime:

- logs: the container's CRI log file (`ContainerStatus.log_path`); `previous`
  is the file of the attempt before the newest one;
- exec: `Runtime.exec`, terminal resizes passed on as (width, height);
- port-forward: a TCP connection to the pod IP (to 127.0.0.1 for a
  `hostNetwork` pod), which the pod's namespace routes like any client's;
- attach: `Runtime.attach` to the newest attempt, which must be running (kubectl
  falls back to the logs when a `run -it` container has already exited).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from nanokube.api import errors
from nanokube.kubelet.streaming.server import PodRef, TerminalSize
from nanokube.runtime.contract import ContainerStatus, OutputSink, Runtime, SandboxStatus

log = logging.getLogger(__name__)


class RuntimeStreaming:
    """A `StreamingBackend` that looks pods up in the runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def _sandbox(self, pod: PodRef) -> SandboxStatus:
        found = [
            sb
            for sb in await self.runtime.list_sandboxes()
            if sb.config.namespace == pod.namespace
            and sb.config.name == pod.name
            and (not pod.uid or sb.config.uid == pod.uid)
        ]
        if not found:
            raise errors.NotFound(f'pod "{pod.name}" not found on this node')
        ready = [sb for sb in found if sb.state == "ready"] or found
        return max(ready, key=lambda sb: sb.created_at)

    async def _containers(self, pod: PodRef, container: str) -> list[ContainerStatus]:
        sandbox = await self._sandbox(pod)
        runs = [c for c in await self.runtime.list_containers(sandbox.id) if c.name == container]
        if not runs:
            raise errors.BadRequest(
                f'container "{container}" in pod "{pod.name}" is waiting to start'
            )
        return sorted(runs, key=lambda c: (c.attempt, c.created_at), reverse=True)

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
        newest = (await self._containers(pod, container))[0]
        if newest.state != "running":
            raise errors.BadRequest(f"container {container} is not running (state: {newest.state})")
        return await self.runtime.exec(
            newest.id,
            cmd,
            tty=tty,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            resize=_sizes(resize),
        )

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
        newest = (await self._containers(pod, container))[0]
        if newest.state != "running":
            raise errors.BadRequest(f"container {container} is not running (state: {newest.state})")
        await self.runtime.attach(
            newest.id, stdin=stdin, stdout=stdout, stderr=stderr, resize=_sizes(resize)
        )

    async def log_path(self, pod: PodRef, container: str, previous: bool) -> Path:
        runs = await self._containers(pod, container)
        if not previous:
            return Path(runs[0].log_path)
        if len(runs) > 1:
            return Path(runs[1].log_path)
        newest = runs[0]
        if newest.attempt == 0 or not newest.log_path:
            raise errors.BadRequest(
                f'previous terminated container "{container}" in pod "{pod.name}" not found'
            )
        path = Path(newest.log_path)
        return path.with_name(f"{newest.attempt - 1}.log")

    async def container_running(self, pod: PodRef, container: str) -> bool:
        try:
            return (await self._containers(pod, container))[0].state == "running"
        except errors.StatusError:
            return False

    async def port_forward(
        self, pod: PodRef, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sandbox = await self._sandbox(pod)
        host = sandbox.ip or "127.0.0.1"
        try:
            return await asyncio.open_connection(host, port)
        except OSError as e:
            raise errors.StatusError(f"error forwarding port {port} to pod {pod.name}: {e}") from e


def _sizes(resize: AsyncIterator[TerminalSize] | None) -> AsyncIterator[tuple[int, int]] | None:
    """The runtime's (width, height) view of the streaming server's resize events."""
    if resize is None:
        return None

    async def sizes(source: AsyncIterator[TerminalSize]) -> AsyncIterator[tuple[int, int]]:
        async for size in source:
            yield size.width, size.height

    return sizes(resize)
