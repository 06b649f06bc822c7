"""The scheduler: assigns pending pods to nodes (see `scheduler.Scheduler`)."""

from nanokube.scheduler.scheduler import Scheduler

__all__ = ["Scheduler"]
