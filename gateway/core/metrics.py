"""The gateway's Prometheus metrics (the official ``prometheus_client``), one registry per app.

Every metric lives in the :class:`Metrics` object's own ``CollectorRegistry``,
never in prometheus_client's global one: two apps in one process (the tests
run several) count apart, and nothing correct rests on module-level state.
The app creates it (gateway/http/app.py), the core counts into it
(uploads, store events, the reconciler, thumbnails, the permission cache), the HTTP
layer counts requests, and ``GET /metrics`` on the metrics port renders it.

Label values come from small fixed sets only: a route's path template (never
the raw path, which holds file ids and link tokens), a status code, an event
kind, an outcome's name. A value from a client or the store never becomes a
label, so the number of series stays bounded.
"""
from __future__ import annotations

from typing import TYPE_CHECKING
from collections.abc import Iterator, Sized

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.core.outcomes import Settlement
from gateway.logs import LOG_WRITES

if TYPE_CHECKING:
    from gateway.db import Database

# Control-path calls take milliseconds; a slow store or database call takes seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A store event's outcome that changed nothing (gateway/core/events.py); the rest did something.
IGNORED_OUTCOMES = frozenset({
    "ignored_other_bucket", "ignored_not_content", "unknown_upload", "upload_gone", "still_present",
    "nothing_uploading", "not_completed", "written_whole",
})
RECONCILER_SETTLEMENTS = (Settlement.COMPLETED, Settlement.ABANDONED)


def outcome_name(outcome: str) -> str:
    """An outcome without its details: ``progress:3_pending`` -> ``progress`` (bounded label values)."""
    return outcome.split(":", 1)[0]


class PoolCollector(Collector):
    """The database pool's connections, read at scrape time (never a stale copy)."""

    def __init__(self, db: Database):
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pool = self.db.engine.pool
        checked_out = GaugeMetricFamily(
            "gateway_db_pool_checked_out_connections", "Database connections in use by requests right now")
        size = GaugeMetricFamily("gateway_db_pool_size", "Connections the database pool keeps open")
        # Pools without these counts (NullPool, StaticPool) report nothing rather than a made-up zero.
        if hasattr(pool, "checkedout"):
            checked_out.add_metric([], pool.checkedout())
            yield checked_out
        if hasattr(pool, "size"):
            size.add_metric([], pool.size())
            yield size


class WaitsCollector(Collector):
    """The change waits open in this process (GET /dropbox/v1/changes/wait), read at scrape time."""

    def __init__(self, waiters: Sized):
        self.waiters = waiters

    def collect(self) -> Iterator[GaugeMetricFamily]:
        waits = GaugeMetricFamily("gateway_change_waits_open", "Change waits open in this process right now")
        waits.add_metric([], len(self.waiters))
        yield waits


class WorkCollector(Collector):
    """What requests have asked of the database (statements, transactions; background work's statements
    apart) and of the store (requests by operation) so far, read at scrape time: ``bench control`` prints them per request beside its figures.
    A store without a count (the in-memory one) reports no store series."""

    def __init__(self, db: Database, store: object):
        self.db = db
        self.store = store

    def collect(self) -> Iterator[CounterMetricFamily]:
        statements = CounterMetricFamily("gateway_db_statements", "SQL statements sent to the database")
        statements.add_metric([], self.db.work.statements)
        transactions = CounterMetricFamily("gateway_db_transactions", "Database transactions begun, reads and writes")
        transactions.add_metric([], self.db.work.transactions)
        background = CounterMetricFamily("gateway_db_background_statements",
                                         "SQL statements sent by background work (rounds, the journal's follower)")
        background.add_metric([], self.db.work.background_statements)
        yield from (statements, transactions, background)
        sent = getattr(self.store, "requests_sent", None)
        if sent is not None:
            requests = CounterMetricFamily("gateway_store_requests", "Requests sent to the object store, by operation",
                                           labels=["operation"])
            for operation, count in sorted(sent.items()):
                requests.add_metric([operation], count)
            yield requests


class LogCollector(Collector):
    """Log lines the process could not write (a full disk): dropped rather than fail a request (gateway/logs.py).

    Logging is the process's, so this count is too: every app in one process reports the same.
    """

    def collect(self) -> Iterator[CounterMetricFamily]:
        dropped = CounterMetricFamily("gateway_log_lines_dropped", "Log lines dropped because they could not be written")
        dropped.add_metric([], LOG_WRITES.dropped)
        yield dropped


class Metrics:
    """Every metric of one gateway app, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter("gateway_http_requests", "HTTP requests answered, by route template and status",
                                ["method", "route", "status"], registry=reg)
        self.request_seconds = Histogram("gateway_http_request_duration_seconds", "Time to answer, by route template",
                                         ["method", "route"], buckets=LATENCY_BUCKETS, registry=reg)
        self.uploads_started = Counter("gateway_uploads_started", "Files created by an upload start", registry=reg)
        self.uploads_completed = Counter("gateway_uploads_completed", "Files that turned uploaded", registry=reg)
        self.uploads_failed = Counter("gateway_uploads_failed", "Files that turned failed", registry=reg)
        self.bytes_announced = Counter("gateway_upload_bytes_announced", "Sizes of the files uploads started for",
                                       registry=reg)
        self.store_events = Counter("gateway_store_events_received", "Store events received, by kind", ["kind"],
                                    registry=reg)
        self.store_events_ignored = Counter("gateway_store_events_ignored",
                                            "Store events that changed nothing, by outcome", ["outcome"], registry=reg)
        self.reconciler_runs = Counter("gateway_reconciler_runs", "Reconciler rounds run", registry=reg)
        self.reconciler_settlements = Counter("gateway_reconciler_settlements",
                                              "Uploads a reconciler round settled, by outcome", ["outcome"],
                                              registry=reg)
        self.thumbnails = Counter("gateway_thumbnails", "Contents the thumbnail worker finished, by outcome "
                                  "(made, none, retry, lost)", ["outcome"], registry=reg)
        self.cache_lookups = Counter("gateway_permission_cache_lookups",
                                     "Permission cache lookups, by result (hit or miss)", ["result"], registry=reg)
        for result in ("hit", "miss"):
            self.cache_lookups.labels(result)  # both series exist from the start, at 0
        reg.register(LogCollector())

    def watch_database(self, db: Database, store: object = None) -> None:
        """Report ``db``'s pool, and the work asked of ``db`` and ``store``, at every scrape."""
        self.registry.register(PoolCollector(db))
        self.registry.register(WorkCollector(db, store))

    def watch_waits(self, waiters: Sized) -> None:
        """Report how many change waits are open at every scrape."""
        self.registry.register(WaitsCollector(waiters))

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    def upload_started(self, size: int) -> None:
        self.uploads_started.inc()
        self.bytes_announced.inc(size)

    def store_event(self, kind: str, outcome: str) -> None:
        self.store_events.labels(kind).inc()
        name = outcome_name(outcome)
        if name in IGNORED_OUTCOMES or name.startswith("ignored_"):
            self.store_events_ignored.labels(name).inc()

    def reconciled(self, counts: dict[str, int]) -> None:
        self.reconciler_runs.inc()
        for outcome in RECONCILER_SETTLEMENTS:
            if counts.get(outcome):
                self.reconciler_settlements.labels(outcome).inc(counts[outcome])

    def thumbnails_done(self, counts: dict[str, int]) -> None:
        for outcome, count in counts.items():
            if count:
                self.thumbnails.labels(outcome).inc(count)

    def cache_lookup(self, hit: bool) -> None:
        self.cache_lookups.labels("hit" if hit else "miss").inc()
