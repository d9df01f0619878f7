"""The number of task messages waiting in the broker queue (the `synthjobs_queue_depth` metric)."""

from __future__ import annotations

import os

import redis

from synthjobs.broker.queue import all_queues
from synthjobs.ledger.kombu_depth import dispose_broker_engines, kombu_queue_depth
from synthjobs.settings import Settings

# kombu's Redis transport puts a message of priority p > 0 on "<queue>\x06\x16<step>" (steps 3, 6, 9).
_REDIS_PRIORITY_SEP = "\x06\x16"
_REDIS_PRIORITY_STEPS = (3, 6, 9)

_redis_clients: dict[tuple[int, str], redis.Redis] = {}


class UnsupportedBroker(Exception):
    """The broker's transport has no queue-depth reader here (only Redis and kombu's SQLAlchemy)."""


def read_queue_depths(settings: Settings) -> dict[str, int]:
    """Messages waiting in each lane's queue (`broker.queue.all_queues`), by queue name."""
    return {queue: read_queue_depth(settings, queue) for queue in all_queues(settings)}


def read_queue_depth(settings: Settings, queue: str) -> int:
    """Messages waiting in `queue`: LLEN on Redis, visible rows on kombu's SQLAlchemy transport.

    Raises:
        UnsupportedBroker: for other transports (the depth is then left out).
        Exception: whatever the broker client raised when the broker is unreachable.
    """
    url = settings.resolved_broker_url().split(";")[0]  # kombu accepts "url1;url2" for failover
    scheme = url.partition("://")[0]
    timeout = settings.enqueue_timeout
    if scheme in ("redis", "rediss"):
        return _redis_depth(url, queue, timeout)
    if scheme.startswith(("sqla+", "sqlalchemy+")):
        return kombu_queue_depth(url.partition("+")[2], queue, timeout)
    raise UnsupportedBroker(scheme)


def _redis_depth(url: str, queue: str, timeout: float) -> int:
    key = (os.getpid(), url)
    client = _redis_clients.get(key)
    if client is None:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        _redis_clients[key] = client
    names = [queue, *(f"{queue}{_REDIS_PRIORITY_SEP}{step}" for step in _REDIS_PRIORITY_STEPS)]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
    return sum(int(length) for length in pipe.execute())


def dispose_broker_clients() -> None:
    """Close this process's broker connections made for metrics (tests, shutdown)."""
    for (pid, _url), client in list(_redis_clients.items()):
        if pid == os.getpid():
            client.close()
    _redis_clients.clear()
    dispose_broker_engines()
