"""`nanokube controller-manager` and `nanokube scheduler`: one component against a server.

The component talks to the API over HTTPS with the kubeconfig's credentials
and acts only while it holds its Lease (see `controlplane`). SIGTERM/SIGINT
release the lease and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from nanokube.cli import controlplane

log = logging.getLogger(__name__)


async def _run(component: str, kubeconfig: Path) -> int:
    from nanokube.client.http import HTTPClient

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with HTTPClient.from_kubeconfig(str(kubeconfig)) as client:
        plane = asyncio.create_task(
            controlplane.run_control_plane(
                client,
                controlplane.Election(),
                controllers=component == "controller-manager",
                scheduler=component == "scheduler",
            )
        )
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({plane, waiter}, return_when=asyncio.FIRST_COMPLETED)
        plane.cancel()
        waiter.cancel()
        results = await asyncio.gather(plane, return_exceptions=True)
        failure = next((r for r in results if isinstance(r, Exception)), None)
        if failure is not None and not isinstance(failure, asyncio.CancelledError):
            log.error("%s failed: %s", component, failure)
            return 1
    log.info("%s stopped", component)
    return 0


def serve(component: str, kubeconfig: Path) -> int:
    import uvloop

    return uvloop.run(_run(component, kubeconfig))
