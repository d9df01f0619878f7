"""The dispatcher: release the next sampling shards from SQL and publish them.

Called whenever the window may have room: at submit of a sampling job, by a worker as soon as a shard
task ends (so the next unit is queued before that worker asks for one: no polling gap), and by each
reconciler pass (after a broker restart, or when a publish failed). A worker that completed a shard
releases inside the completion's own transaction (`ledger.dispatch.release_next`, then `publish_released`
after the commit):
one commit per unit instead of two. What to release is decided in SQL
(`ledger.dispatch`, choosing by `rules.fair_share`) and committed before anything is published; a shard
released but never delivered is republished by the reconciler like any lost message.
"""

from __future__ import annotations

import logging

from celery import Celery

from synthjobs.broker.queue import enqueue_shards
from synthjobs.ledger import dispatch
from synthjobs.ledger.retry import in_transaction
from synthjobs.rules import tenant_policy
from synthjobs.settings import Settings

log = logging.getLogger(__name__)


def publish_released(sender: Celery, released: dict[str, list[int]], settings: Settings) -> None:
    """Publish shards already released and committed; what fails to publish the reconciler republishes."""
    for job_id, indexes in released.items():
        enqueue_shards(sender, job_id, indexes, settings)


def dispatch_shards(sender: Celery, settings: Settings) -> dict[str, list[int]]:
    """Fill the shard window and publish what was released; {job id: indexes} released (published or not).

    Never raises: a failure leaves the shards in SQL (unreleased, or released and stale) for the reconciler.
    """
    url = settings.resolved_database_url()
    try:
        released = in_transaction(
            url,
            lambda s: dispatch.release_next(s, settings.shard_window, tenant_policy.weights(settings)),
            what="releasing sampling shards",
        )
    except Exception:  # noqa: BLE001 - the reconciler's pass releases them later
        log.exception("could not release sampling shards; the reconciler will")
        return {}
    publish_released(sender, released, settings)
    return released
