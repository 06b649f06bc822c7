"""The control plane's active parts: the controller manager and the scheduler.

Each runs under leader election on its own Lease in `kube-system`
(`kube-controller-manager`, `kube-scheduler`), as upstream's do, so any number
of copies (in `nanokube server` processes or as `nanokube controller-manager` /
`nanokube scheduler` processes against a server) may run and only one of each
acts. A copy that loses its lease stops acting at once and campaigns again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nanokube.client.interface import Client
from nanokube.client.leaderelection import LeaderElectionConfig, LeaderElector

if TYPE_CHECKING:  # the controllers are imported once the API serves: start-up stays fast
    from nanokube.controllers.manager import ControllerManagerOptions

log = logging.getLogger(__name__)

CONTROLLER_MANAGER_LEASE = "kube-controller-manager"
SCHEDULER_LEASE = "kube-scheduler"


def default_identity() -> str:
    """Unique per process, readable: `HOST_PID_RANDOM`, as upstream's `HOST_UUID`."""
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


@dataclass
class Election:
    """Lease timing and who we are.

    Shorter than upstream's 15/10/2 s so that a crashed leader is replaced
    within 15 s (lease 10 s + at most two retry periods to notice and take it).
    """

    identity: str = field(default_factory=default_identity)
    lease_duration: float = 10.0
    renew_deadline: float = 7.0
    retry_period: float = 2.0

    def config(self, name: str) -> LeaderElectionConfig:
        return LeaderElectionConfig(
            name=name,
            identity=self.identity,
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
        )


async def lead_forever(
    client: Client, name: str, election: Election, act: Callable[[], Awaitable[None]]
) -> None:
    """Campaign for the lease `name`; while leading, run `act()`; campaign again when lost."""
    elector = LeaderElector(client, election.config(name))

    async def leading() -> None:
        log.info("became leader lease=%s identity=%s", name, election.identity)
        await act()

    while True:
        await elector.run(leading)
        log.warning("lost leadership lease=%s identity=%s", name, election.identity)


async def run_controller_manager(client: Client, options: ControllerManagerOptions) -> None:
    from nanokube.controllers.manager import ControllerManager

    await ControllerManager(client, options=options).run()


async def run_scheduler(client: Client) -> None:
    from nanokube.scheduler import Scheduler

    await Scheduler(client).run()


async def run_control_plane(
    client: Client,
    election: Election,
    *,
    controllers: bool = True,
    scheduler: bool = True,
    controller_options: ControllerManagerOptions | None = None,
) -> None:
    """Run the enabled components, each under its own leader election, until cancelled."""
    from nanokube.controllers.manager import ControllerManagerOptions

    options = controller_options or ControllerManagerOptions()
    async with asyncio.TaskGroup() as tasks:
        if controllers:
            tasks.create_task(
                lead_forever(
                    client,
                    CONTROLLER_MANAGER_LEASE,
                    election,
                    lambda: run_controller_manager(client, options),
                )
            )
        if scheduler:
            tasks.create_task(
                lead_forever(client, SCHEDULER_LEASE, election, lambda: run_scheduler(client))
            )
