"""Prometheus metrics of the service, computed from the SQL ledger and the broker at scrape time.

Why at scrape time, and from SQL: every fact worth counting (job states and durations, epochs trained,
samples and bytes written, models registered) is already a row in the ledger, written by whichever worker
did the work. Reading the numbers from there when Prometheus scrapes the API means workers need no metrics
endpoint of their own (no port per worker process, no service discovery of GPU boxes, no multiprocess
counter files), a restarted process loses nothing, and every API replica answers the same numbers.
Because every replica reports the same totals, scrape one replica or aggregate replicas with `max`, not `sum`.

The cost is five aggregate queries per scrape. They return a few rows each but read every row they count
(the histogram reads finished jobs through `ix_jobs_state_created`; job_events and job_shards have no
index on kind or state): about 0.15 s per scrape measured with 50,000 jobs, 500,000 events and 100,000
shards, on SQLite and PostgreSQL alike.

`collect(session, settings)` returns the text exposition format 0.0.4 (served as `CONTENT_TYPE`), rendered
by prometheus-client from `LedgerCollector`, a custom collector that runs the queries on each scrape (no
Counter or Gauge objects: the numbers live in SQL, not in this process). This module knows nothing of HTTP.
A database error propagates (the scrape fails, which Prometheus records as `up == 0`); a broker error only
sets `synthjobs_broker_up 0` and drops the queue depth. Counter names on the wire keep their `_total`
suffix; prometheus-client's parser reports those families without it (`synthjobs_models`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from itertools import accumulate
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from synthjobs.broker.depth import UnsupportedBroker, read_queue_depths
from synthjobs.ledger import stats
from synthjobs.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Upper bounds (seconds) of the duration histogram's buckets; +Inf is added on output.
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 15, 60, 300, 900, 3600, 14400)
# Upper bounds (seconds) of the queue-wait histogram's buckets.
WAIT_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)


def collect(session: Session, settings: Settings) -> str:
    """Every synthjobs metric, in Prometheus text format 0.0.4.

    Args:
        session: a session on the jobs database; only read from.
        settings: where the broker is and which queue the workers consume.

    Returns:
        The exposition text, ending with a newline.
    """
    registry = CollectorRegistry(auto_describe=False)  # one per scrape: the collector holds this session
    registry.register(LedgerCollector(session, settings))
    return generate_latest(registry).decode()


class LedgerCollector(Collector):
    """The service's metric families, read from the ledger (and the broker's queue) when collected."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        yield self._jobs()
        yield from self._broker()
        yield self._durations()
        yield self._waits()
        yield from self._outputs()

    def _jobs(self) -> Metric:
        family = GaugeMetricFamily(
            "synthjobs_jobs", "Jobs in the ledger by kind and state.", labels=["kind", "state"]
        )
        for (kind, state), count in sorted(stats.job_counts(self.session).items()):
            family.add_metric([kind, state], count)
        return family

    def _broker(self) -> list[Metric]:
        help_up = "1 when the broker answered the queue-depth query, else 0."
        try:
            waiting = read_queue_depths(self.settings)
        except UnsupportedBroker:
            return []
        except Exception as exc:  # noqa: BLE001 - a broken broker is a metric, not a failed scrape
            log.warning("metrics: broker unreachable, queue depth left out: %s: %s", type(exc).__name__, exc)
            return [GaugeMetricFamily("synthjobs_broker_up", help_up, value=0)]
        depth = GaugeMetricFamily(
            "synthjobs_queue_depth",
            "Task messages waiting in each broker queue (lane), not yet delivered.",
            labels=["queue"],
        )
        for queue, count in waiting.items():
            depth.add_metric([queue], count)
        return [GaugeMetricFamily("synthjobs_broker_up", help_up, value=1), depth]

    def _durations(self) -> Metric:
        """Finished jobs' run time, bucketed by the database (`ledger.stats.duration_buckets`).

        Bucketing in SQL counts every job that ever finished (no window), so `_count` and the buckets only
        grow, as Prometheus expects of a histogram. Each run is put in its smallest bucket there; the
        cumulative counts are summed up here.
        """
        family = HistogramMetricFamily(
            "synthjobs_task_duration_seconds",
            "Run time (finished_at - started_at) of jobs that ran and finished, by kind.",
            labels=["kind"],
        )
        counts, totals = stats.duration_buckets(self.session, DURATION_BUCKETS)
        bounds = [*(floatToGoString(bound) for bound in DURATION_BUCKETS), "+Inf"]
        for kind in sorted(counts):
            cumulative = list(accumulate(counts[kind]))
            family.add_metric([kind], list(zip(bounds, cumulative, strict=True)), sum_value=totals[kind])
        return family

    def _waits(self) -> Metric:
        """Queue wait per tenant: submit -> first claim of jobs, release -> claim of sampling shards.

        From the ledger like the durations (`ledger.stats.wait_buckets`), so it only grows. The tenant
        label is the tenant's name: /metrics is an operator's endpoint, not a tenant's.
        """
        family = HistogramMetricFamily(
            "synthjobs_queue_wait_seconds",
            "Time work waited for a worker, by tenant and stage: job (submit -> first claim) and shard "
            "(a sampling shard's release into the window -> its first claim).",
            labels=["tenant", "stage"],
        )
        bounds = [*(floatToGoString(bound) for bound in WAIT_BUCKETS), "+Inf"]
        for (tenant, stage), (counts, total) in sorted(
            stats.wait_buckets(self.session, WAIT_BUCKETS).items()
        ):
            cumulative = list(accumulate(counts))
            family.add_metric([tenant, stage], list(zip(bounds, cumulative, strict=True)), sum_value=total)
        return family

    def _outputs(self) -> Iterator[Metric]:
        totals = stats.output_totals(self.session)
        counters = [
            (
                "synthjobs_samples_generated_total",
                "Samples written by finished (DONE) shards.",
                totals.samples,
            ),
            (
                "synthjobs_bytes_uploaded_total",
                "Bytes stored: finished (DONE) shards plus final model checkpoints (from 'uploaded' events). "
                "Resume checkpoints, previews and model cards are not recorded, so not counted.",
                totals.shard_bytes + totals.checkpoint_bytes,
            ),
            (
                "synthjobs_training_epochs_total",
                "Training epochs completed (job events of kind 'epoch').",
                totals.epochs,
            ),
            ("synthjobs_models_total", "Models registered (every version of every name).", totals.models),
        ]
        for name, help_text, value in counters:
            yield CounterMetricFamily(name, help_text, value=value)
