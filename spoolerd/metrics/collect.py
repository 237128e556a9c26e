"""The metrics of one running daemon, from what it already tells: mail lines, events, status.

Counters and histograms are fed by the mail log (``maillog.observe``: one line per recipient outcome,
accepted message, report filed, download, relay state change) and by the spooler's attempt observers;
gauges are read at scrape time from state the daemon keeps anyway (the queue census, the transports'
slots and destination cache, the stores' health, the listeners' status rows), none of which walks the
queue. Every label value comes from the configuration or from a short fixed list (a status, a state, a
submission path): no message, recipient or client ever becomes a label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .. import maillog
from ..host import Host
from .census import QueueState
from .queue import QueueCensus

__all__ = ["DaemonMetrics", "MetricsHost"]

log = structlog.get_logger("spoolerd.metrics")

PREFIX = "spoolerd"
# submission to delivery: seconds to days (the queue lifetime is five days)
DELAY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 5 * 86400)
# one attempt: a local store in milliseconds, a remote relay in seconds, a timeout in minutes
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)
STATUSES = tuple(s.value for s in maillog.Status)
SUBMISSION_PATHS = ("socket", "sendmail", "smtp")
REPORTS = ("ndr", "dr", "delay")
MAX_RELAYS = 256  # relay series kept: destinations come from the configuration, this guards the rest
_DOWN = frozenset({maillog.RELAY_DOWN, maillog.LOGIN_REFUSED, maillog.TLS_FAILED})


class MetricsHost(Host, Protocol):
    """What the metrics read of a running daemon (which starts them, so they must not import it): what
    a face may use, and the latency of every store call."""

    @property
    def store_timings(self) -> Histogram | None: ...


class DaemonMetrics(Collector):
    """A registry of its own (tests run several daemons in one process), filled from the daemon."""

    def __init__(self, daemon: MetricsHost) -> None:
        self.daemon = daemon
        self.census = QueueCensus(daemon.stores, daemon.spooler.clock)
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.outcomes = Counter(
            f"{PREFIX}_recipient_outcomes",
            "Recipient outcomes of delivery attempts, by transport and status (sent: 2xx, deferred: 4xx"
            " or no answer, bounced: 5xx, expired: queued too long, 4.4.7)",
            ["transport", "status"],
            registry=r,
        )
        self.delay = Histogram(
            f"{PREFIX}_delivery_delay_seconds",
            "Seconds from submission to delivery, per recipient delivered",
            ["transport"],
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.attempts = Histogram(
            f"{PREFIX}_delivery_attempt_duration_seconds",
            "Seconds one delivery attempt of one message took, from its lock to its finish or retry",
            ["store"],
            buckets=ATTEMPT_BUCKETS,
            registry=r,
        )
        self.submissions = Counter(
            f"{PREFIX}_submissions",
            "Messages accepted into a store's queue, by submission path (socket: the control socket,"
            " spoolerd-sendmail included; smtp: a listener; sendmail: written without the daemon)",
            ["via", "store"],
            registry=r,
        )
        self.reports = Counter(
            f"{PREFIX}_reports_filed", "Reports filed in senders' stores", ["report"], registry=r
        )
        self.downloaded = Counter(
            f"{PREFIX}_imap_downloaded_messages",
            "Messages downloaded and committed, per downloading transport (one IMAP account each)",
            ["transport"],
            registry=r,
        )
        self._relays: dict[tuple[str, str], int] = {}  # (transport, relay) -> up, from the mail lines
        ProcessCollector(registry=r)
        if daemon.store_timings is not None:
            r.register(daemon.store_timings)
        r.register(self)
        for name in daemon.stores:
            self.attempts.labels(name)
            for via in SUBMISSION_PATHS:
                self.submissions.labels(via, name)
        for slot in daemon.spooler.dispatcher.transports:
            self.delay.labels(slot.name)
            for status in STATUSES:
                self.outcomes.labels(slot.name, status)
        for kind in REPORTS:
            self.reports.labels(kind)
        self._stop_observing: Callable[[], None] | None = None

    def start(self) -> None:
        self.census.start(self.daemon.spooler.events.subscribe)
        self._stop_observing = maillog.observe(self._mail_line)
        self.daemon.spooler.attempt_observers.append(self._attempted)

    def stop(self) -> None:
        self.census.stop()
        if self._stop_observing is not None:
            self._stop_observing()
            self._stop_observing = None
        if self._attempted in self.daemon.spooler.attempt_observers:
            self.daemon.spooler.attempt_observers.remove(self._attempted)

    # ------------------------------------------------------------------ what the daemon tells

    def _attempted(self, store: str, message_id: str, seconds: float) -> None:
        self.attempts.labels(store).observe(seconds)

    def _mail_line(self, event: str, keys: Mapping[str, Any]) -> None:
        try:
            self._count_line(event, keys)
        except Exception:  # a line the metrics misread must never cost the delivery that wrote it
            log.exception("metrics could not count a mail line", line=event)

    def _count_line(self, event: str, keys: Mapping[str, Any]) -> None:
        if event == maillog.DELIVERY:
            transport = keys["transport"] or "none"
            self.outcomes.labels(transport, keys["status"]).inc()
            if keys["status"] == maillog.Status.SENT:
                self.delay.labels(transport).observe(keys["delay"])
                if keys["relay"]:
                    self._relay(transport, keys["relay"], 1)
        elif event == maillog.ACCEPTED:
            self.submissions.labels(keys["via"], keys["store"]).inc()
            self.census.announced(keys["store"], keys["queue_id"], keys["nrcpt"])
        elif event == maillog.REPORT_FILED:
            self.reports.labels(keys["report"]).inc()
        elif event == maillog.DOWNLOADED:
            self.downloaded.labels(keys["transport"]).inc(keys["count"])
        elif event in _DOWN:
            self._relay(keys["transport"], keys["relay"], 0)
        elif event == maillog.RELAY_UP:
            self._relay(keys["transport"], keys["relay"], 1)

    def _relay(self, transport: str, relay: str, up: int) -> None:
        if (transport, relay) in self._relays or len(self._relays) < MAX_RELAYS:
            self._relays[(transport, relay)] = up

    # ------------------------------------------------------------------ read at scrape time

    def collect(self) -> Iterator[Metric]:
        yield from self._queue()
        yield from self._transports()
        yield from self._stores()
        yield from self._listeners()
        yield from self._webhooks()

    def _queue(self) -> Iterator[Metric]:
        messages = GaugeMetricFamily(
            f"{PREFIX}_queue_messages",
            "Messages in a store's outgoing queue, by state (queued: not tried yet, deferred: waiting"
            " for a retry, held, active: an attempt in flight)",
            labels=["store", "state"],
        )
        recipients = GaugeMetricFamily(
            f"{PREFIX}_queue_recipients",
            "Recipients still to be delivered in queued messages, by their message's state",
            labels=["store", "state"],
        )
        oldest = GaugeMetricFamily(
            f"{PREFIX}_queue_oldest_message_age_seconds",
            "Seconds since the message queued longest was submitted (0: the queue is empty)",
            labels=["store"],
        )
        active: dict[str, list[str]] = {}
        for store, message_id in self.daemon.spooler.in_flight_ids():
            active.setdefault(store, []).append(message_id)
        now = self.census.clock()
        for store in self.census.stores:
            count = self.census.count(store, active.get(store, []))
            if count is None:
                continue  # not counted yet: no number rather than a wrong one
            for state in QueueState:
                messages.add_metric([store, state.value], count.messages[state])
                recipients.add_metric([store, state.value], count.recipients[state])
            oldest.add_metric([store], 0.0 if count.oldest is None else max(0.0, now - count.oldest))
        yield from (messages, recipients, oldest)

    def _transports(self) -> Iterator[Metric]:
        dispatcher = self.daemon.spooler.dispatcher
        up = GaugeMetricFamily(
            f"{PREFIX}_transport_up",
            "1 when the transport is online and neither it nor one of its destinations is failing",
            labels=["transport"],
        )
        online = GaugeMetricFamily(
            f"{PREFIX}_transport_online", "1 unless taken offline (spoolerctl offline)", labels=["transport"]
        )
        relay_up = GaugeMetricFamily(
            f"{PREFIX}_relay_up",
            "1 while a relay answers, 0 from the attempt that found it down (no answer, login refused,"
            " TLS failed) until one that gets through",
            labels=["transport", "relay"],
        )
        failures = GaugeMetricFamily(
            f"{PREFIX}_relay_consecutive_failures",
            "Sends to a relay that got no usable answer since its last success",
            labels=["transport", "relay"],
        )
        down: dict[tuple[str, str], int] = {}
        for slot in dispatcher.transports:
            up.add_metric([slot.name], float(slot.resource.availability == "available"))
            online.add_metric([slot.name], float(slot.online))
            for destination in slot.down:
                down[(slot.name, destination)] = 0
        failed: dict[tuple[str, str], int] = {}
        for key, count in dispatcher.destinations.consecutive_failures().items():
            transport, _, destination = key.partition(":")
            failed[(transport, destination)] = count
        relays = {**self._relays, **down}
        for transport, relay in sorted(set(relays) | set(failed))[:MAX_RELAYS]:
            relay_up.add_metric([transport, relay], relays.get((transport, relay), 1))
            failures.add_metric([transport, relay], failed.get((transport, relay), 0))
        yield from (up, online, relay_up, failures)

    def _stores(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            f"{PREFIX}_store_up", "0 while the store fails (a full disk, a database gone)", labels=["store"]
        )
        for name, state in self.daemon.spooler.health.states.items():
            up.add_metric([name], float(not state.failing))
        yield up

    def _listeners(self) -> Iterator[Metric]:
        rows = [r for rows in self.daemon.status_rows for r in rows() if r["resource_type"] == "listener"]
        sessions = GaugeMetricFamily(
            f"{PREFIX}_listener_open_sessions", "SMTP sessions open now", labels=["listener"]
        )
        started = CounterMetricFamily(
            f"{PREFIX}_listener_sessions", "SMTP sessions admitted", labels=["listener"]
        )
        accepted = CounterMetricFamily(
            f"{PREFIX}_listener_messages_accepted", "Messages a listener queued", labels=["listener"]
        )
        refused = CounterMetricFamily(
            f"{PREFIX}_listener_refusals",
            "Commands a listener refused (relay denied, bad address, too large, store unavailable)",
            labels=["listener"],
        )
        turned_away = CounterMetricFamily(
            f"{PREFIX}_listener_refused_connections",
            "Connections refused over max_connections",
            labels=["listener"],
        )
        for row in rows:
            counters = row.get("counters") or {}
            name = [row["name"]]
            sessions.add_metric(name, counters.get("connections", 0))
            started.add_metric(name, counters.get("sessions", 0))
            accepted.add_metric(name, counters.get("accepted", 0))
            refused.add_metric(name, counters.get("refused", 0))
            turned_away.add_metric(name, counters.get("refused_connections", 0))
        yield from (sessions, started, accepted, refused, turned_away)

    def _webhooks(self) -> Iterator[Metric]:
        rows = [r for rows in self.daemon.status_rows for r in rows() if r["resource_type"] == "webhook"]
        sent = CounterMetricFamily(
            f"{PREFIX}_webhook_events_sent",
            "Delivery events a webhook's endpoint took (2xx)",
            labels=["webhook"],
        )
        failed = CounterMetricFamily(
            f"{PREFIX}_webhook_post_failures",
            "POSTs to a webhook that got no 2xx (no connection, a timeout, another status): each is retried",
            labels=["webhook"],
        )
        dropped = CounterMetricFamily(
            f"{PREFIX}_webhook_events_dropped",
            "Delivery events dropped unsent, the oldest first, to keep a webhook's backlog at max_backlog",
            labels=["webhook"],
        )
        backlog = GaugeMetricFamily(
            f"{PREFIX}_webhook_backlog_events", "Delivery events waiting to be sent", labels=["webhook"]
        )
        for row in rows:
            counters, name = row["counters"], [row["name"]]
            sent.add_metric(name, counters["sent"])
            failed.add_metric(name, counters["failed"])
            dropped.add_metric(name, counters["dropped"])
            backlog.add_metric(name, counters["backlog"])
        yield from (sent, failed, dropped, backlog)
