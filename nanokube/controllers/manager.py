"""The controller manager: every controller, over one shared set of informers.

`ControllerManager(client)` builds each controller in `CONTROLLERS` (an
explicit list: adding a controller is adding a line), all asking one
`SharedInformerFactory` for their informers, so each kind is listed and
watched once however many controllers read it. `start()` starts the
informers and the controllers as asyncio tasks; `stop()` stops them.
`run()` does both around waiting forever, for a server process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers.base import Controller
from nanokube.controllers.cronjob import CronJobController
from nanokube.controllers.daemonset import DaemonSetController
from nanokube.controllers.deployment import DeploymentController
from nanokube.controllers.disruption import DisruptionController
from nanokube.controllers.endpoints import EndpointsController
from nanokube.controllers.endpointslice import EndpointSliceController
from nanokube.controllers.garbagecollector import GarbageCollector
from nanokube.controllers.hpa import HorizontalController
from nanokube.controllers.job import JobController
from nanokube.controllers.job_ttl import TTLAfterFinishedController
from nanokube.controllers.localpath import LocalPathProvisioner
from nanokube.controllers.namespace import NamespaceController
from nanokube.controllers.nodeipam import DEFAULT_CLUSTER_CIDR, NodeIPAMController
from nanokube.controllers.nodelifecycle import NodeLifecycleController, NodeLifecycleOptions
from nanokube.controllers.replicaset import ReplicaSetController
from nanokube.controllers.serviceaccount import ServiceAccountController
from nanokube.controllers.statefulset import StatefulSetController
from nanokube.controllers.volumebinding import PersistentVolumeController

log = logging.getLogger(__name__)

ControllerFactory = Callable[[Client, SharedInformerFactory], Controller]

# Every controller the manager runs, by name (as upstream's --controllers flag names them).
CONTROLLERS: dict[str, ControllerFactory] = {
    "replicaset": ReplicaSetController,
    "deployment": DeploymentController,
    "statefulset": StatefulSetController,
    "daemonset": DaemonSetController,
    "job": JobController,
    "cronjob": CronJobController,
    "ttl-after-finished": TTLAfterFinishedController,
    "garbagecollector": GarbageCollector,
    "namespace": NamespaceController,
    "serviceaccount": ServiceAccountController,
    "endpoint": EndpointsController,
    "endpointslice": EndpointSliceController,
    "persistentvolume-binder": PersistentVolumeController,
    "disruption": DisruptionController,
}


@dataclass
class ControllerManagerOptions:
    """The flags of the controllers that have some (upstream's kube-controller-manager flags)."""

    cluster_cidr: str = DEFAULT_CLUSTER_CIDR
    node_monitor_grace_period: float = 40.0
    # The HPA's pod metrics: the server's own metrics API when the controllers run
    # in its process (the in-process client has no HTTP to reach it), else None:
    # read through the client from metrics.k8s.io.
    metrics: Any = None
    # Where the local-path provisioner puts volumes (on the node that runs the pod).
    storage_dir: Path = Path("/var/lib/nanokube/storage")


def configured(options: ControllerManagerOptions) -> dict[str, ControllerFactory]:
    """`CONTROLLERS` plus the controllers built from `options`."""
    return {
        **CONTROLLERS,
        "nodeipam": lambda c, i: NodeIPAMController(c, i, cluster_cidr=options.cluster_cidr),
        "local-path-provisioner": lambda c, i: LocalPathProvisioner(
            c, i, storage_dir=options.storage_dir
        ),
        "horizontalpodautoscaling": lambda c, i: HorizontalController(
            c, i, metrics=options.metrics
        ),
        "nodelifecycle": lambda c, i: NodeLifecycleController(
            c,
            i,
            NodeLifecycleOptions(node_monitor_grace_period=options.node_monitor_grace_period),
        ),
    }


class ControllerManager:
    def __init__(
        self,
        client: Client,
        *,
        enabled: Iterable[str] | None = None,
        resync_period: float = 0.0,
        options: ControllerManagerOptions | None = None,
    ) -> None:
        """Build the controllers named in `enabled` (default: all of them)."""
        self.client = client
        self.informers = SharedInformerFactory(client, resync_period=resync_period)
        factories = configured(options or ControllerManagerOptions())
        names = list(enabled) if enabled is not None else list(factories)
        unknown = [n for n in names if n not in factories]
        if unknown:
            raise ValueError(f"unknown controllers: {', '.join(unknown)}")
        self.controllers: dict[str, Controller] = {
            name: factories[name](client, self.informers) for name in names
        }

    def start(self) -> None:
        """Start the informers, then every controller (each waits for its informers)."""
        self.informers.start()
        for controller in self.controllers.values():
            controller.start()
        log.info("controller manager started controllers=%s", ",".join(self.controllers))

    async def stop(self) -> None:
        for controller in self.controllers.values():
            await controller.stop()
        await self.informers.shutdown()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        return await self.informers.wait_for_cache_sync(timeout)

    async def run(self) -> None:
        """Run until cancelled."""
        self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
