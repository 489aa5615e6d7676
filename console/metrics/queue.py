"""How many tasks wait in the Celery broker's queue (Redis only).

Kombu's Redis transport keeps a queue as one list per priority step (the queue's name,
then name + separator + step): the depth is the sum of their lengths. Other brokers
(the filesystem broker of `make run`) are not asked.
"""

from __future__ import annotations

import functools
import logging

import redis
from django.conf import settings
from kombu.transport.redis import PRIORITY_STEPS, Channel

log = logging.getLogger("rampart.metrics")
TIMEOUT = 2.0  # seconds: a scrape must not hang on an unreachable broker


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)


def queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS]


def queue_depth() -> tuple[str, int] | None:
    """(queue name, tasks waiting; -1 when the broker did not answer), or None when the
    broker is not Redis."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")):
        return None
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    try:
        pipe = _client(url).pipeline(transaction=False)
        for key in queue_keys(queue):
            pipe.llen(key)
        return queue, sum(pipe.execute())
    except redis.RedisError as exc:
        log.warning("metrics: the Redis broker did not answer: %s", exc)
        return queue, -1
