"""The machinery every controller, the scheduler and the node agents share to use the API.

- `Client` (`interface`): the one interface; `InProcessClient` (`inprocess`) calls the
  server's registry directly, `HTTPClient` (`http`) speaks HTTPS.
- `kinds`: find a `Kind` by apiVersion+kind or group+plural.
- `Informer`, `SharedInformerFactory` (`informer`) over an `Indexer` (`cache`): list+watch
  caches with event handlers.
- `WorkQueue`, `run_workers` (`workqueue`): the rate-limited, deduplicating queue of keys
  and the worker loops that drain it.
- `LeaderElector` (`leaderelection`): one leader per Lease.
- `EventRecorder` (`events`): core/v1 Events, aggregated.
"""

from nanokube.client.cache import Indexer, key_of, split_key
from nanokube.client.events import EventRecorder
from nanokube.client.http import HTTPClient
from nanokube.client.informer import Informer, SharedInformerFactory
from nanokube.client.inprocess import InProcessClient
from nanokube.client.interface import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, Client, Obj
from nanokube.client.leaderelection import LeaderElectionConfig, LeaderElector
from nanokube.client.workqueue import RateLimiter, ShutDown, WorkQueue, run_workers

__all__ = [
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_PATCH",
    "Client",
    "EventRecorder",
    "HTTPClient",
    "InProcessClient",
    "Indexer",
    "Informer",
    "LeaderElectionConfig",
    "LeaderElector",
    "Obj",
    "RateLimiter",
    "SharedInformerFactory",
    "ShutDown",
    "WorkQueue",
    "key_of",
    "run_workers",
    "split_key",
]
