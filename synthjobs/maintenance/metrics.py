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

`collect(session, settings)` returns the text exposition format 0.0.4 (served as `CONTENT_TYPE`); this
module knows nothing of HTTP. A database error propagates (the scrape fails, which Prometheus records as
`up == 0`); a broker error only sets `synthjobs_broker_up 0` and drops the queue depth.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING

from synthjobs.broker.depth import UnsupportedBroker, read_queue_depth
from synthjobs.ledger import stats
from synthjobs.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Upper bounds (seconds) of the duration histogram's buckets; +Inf is added on output.
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 15, 60, 300, 900, 3600, 14400)

Labels = dict[str, str]


@dataclass
class Family:
    """One metric family: its HELP and TYPE lines and its samples (suffix, labels, value)."""

    name: str
    type: str
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float, labels: Labels | None = None, suffix: str = "") -> None:
        self.samples.append((suffix, labels or {}, value))

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.type}"]
        for suffix, labels, value in self.samples:
            lines.append(f"{self.name}{suffix}{_render_labels(labels)} {_render_value(value)}")
        return lines


def collect(session: Session, settings: Settings) -> str:
    """Every synthjobs metric, in Prometheus text format 0.0.4.

    Args:
        session: a session on the jobs database; only read from.
        settings: where the broker is and which queue the workers consume.

    Returns:
        The exposition text, ending with a newline.
    """
    families = [
        _jobs_family(session),
        *_broker_families(settings),
        _duration_family(session),
        *_output_families(session),
    ]
    return "\n".join(line for family in families for line in family.render()) + "\n"


def _jobs_family(session: Session) -> Family:
    family = Family("synthjobs_jobs", "gauge", "Jobs in the ledger by kind and state.")
    for (kind, state), count in sorted(stats.job_counts(session).items()):
        family.add(count, {"kind": kind, "state": state})
    return family


def _broker_families(settings: Settings) -> list[Family]:
    up = Family("synthjobs_broker_up", "gauge", "1 when the broker answered the queue-depth query, else 0.")
    depth = Family(
        "synthjobs_queue_depth", "gauge", "Task messages waiting in the broker queue (not yet delivered)."
    )
    try:
        waiting = read_queue_depth(settings)
    except UnsupportedBroker:
        return []
    except Exception as exc:  # noqa: BLE001 - a broken broker is a metric, not a failed scrape
        log.warning("metrics: broker unreachable, queue depth left out: %s: %s", type(exc).__name__, exc)
        up.add(0)
        return [up]
    up.add(1)
    depth.add(waiting, {"queue": settings.queue})
    return [up, depth]


def _duration_family(session: Session) -> Family:
    """Finished jobs' run time, bucketed by the database (`ledger.stats.duration_buckets`).

    Bucketing in SQL counts every job that ever finished (no window), so `_count` and the buckets only grow,
    as Prometheus expects of a histogram. Each run is put in its smallest bucket there; the cumulative counts
    are summed up here.
    """
    family = Family(
        "synthjobs_task_duration_seconds",
        "histogram",
        "Run time (finished_at - started_at) of jobs that ran and finished, by kind.",
    )
    counts, totals = stats.duration_buckets(session, DURATION_BUCKETS)
    for kind in sorted(counts):
        cumulative = list(accumulate(counts[kind]))
        for bound, in_bucket in zip(DURATION_BUCKETS, cumulative[:-1], strict=True):
            family.add(in_bucket, {"kind": kind, "le": _render_value(float(bound))}, "_bucket")
        family.add(cumulative[-1], {"kind": kind, "le": "+Inf"}, "_bucket")
        family.add(totals[kind], {"kind": kind}, "_sum")
        family.add(cumulative[-1], {"kind": kind}, "_count")
    return family


def _output_families(session: Session) -> list[Family]:
    totals = stats.output_totals(session)
    families = [
        ("synthjobs_samples_generated_total", "Samples written by finished (DONE) shards.", totals.samples),
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
    result = []
    for name, help_text, value in families:
        family = Family(name, "counter", help_text)
        family.add(value)
        result.append(family)
    return result


# --- Text format ----------------------------------------------------------------------------------------


def _render_labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape_label(value)}"' for name, value in labels.items()) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _render_value(value: float) -> str:
    """Integers as integers ("3"), floats as Python's shortest round-trip repr ("1.0", "0.25"), NaN, ±Inf."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
