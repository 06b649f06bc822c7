"""batch/v1: Job (`batch_job`) and CronJob (`batch_cronjob`), wired here for the registry."""

from __future__ import annotations

from nanokube.api.kinds import Kind
from nanokube.api.resources.batch_cronjob import CRON_JOB
from nanokube.api.resources.batch_job import JOB

KINDS: tuple[Kind, ...] = (JOB, CRON_JOB)
