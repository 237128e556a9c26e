"""What a scrape looks like to Prometheus: valid text format, names by its conventions, bounded labels;
the SMTP listener's sessions; and the Grafana dashboard queries nothing the daemon does not export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiosmtplib

from tests.peers.ports import free_port

from .conftest import MetricsDaemon, Scrape, event
from .test_daemon_metrics import LOCAL, started, submit

DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana-dashboard.json"
NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
# label values that may appear: names from the config, or words from a fixed list
FIXED = {
    "state": {"queued", "deferred", "held", "active"},
    "status": {"sent", "deferred", "bounced", "expired"},
    "via": {"socket", "sendmail", "smtp"},
    "report": {"ndr", "dr", "delay"},
}


async def listening(daemons: list[Any], root: Path) -> Scrape:
    """A daemon with an SMTP listener that has taken one message; a scrape after it was delivered."""
    smtp = free_port()
    daemon = MetricsDaemon(root, free_port(), more=f'[listeners.inbound]\naddress = "127.0.0.1:{smtp}"\n')
    daemon, client, watcher = await started(daemons, daemon)
    await aiosmtplib.send(
        b"Subject: via smtp\r\n\r\nhello\r\n", sender="app@localhost", recipients=[LOCAL],
        hostname="127.0.0.1", port=smtp, timeout=10,
    )  # fmt: skip
    (accepted,) = [line for line in map(json.loads, daemon.log) if line.get("event") == "accepted"]
    await event(watcher, "delivered", accepted["queue_id"])
    delivered = await submit(client, LOCAL)
    await event(watcher, "delivered", delivered)
    return await daemon.scrape()


async def test_the_text_format_follows_prometheus_conventions(root: Path, daemons: list[Any]) -> None:
    s = await listening(daemons, root)
    own = {name: f for name, f in s.families.items() if name.startswith("spoolerd_")}
    assert len(own) >= 20
    for name, family in own.items():
        assert NAME.match(name) and family.documentation, name
        assert family.type in ("counter", "gauge", "histogram"), name
        assert not name.endswith("_total"), name  # the parser strips it from counters' family names
        if family.type == "histogram":
            assert name.endswith("_seconds"), name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created")), sample.name
            for label, value in sample.labels.items():
                if label in FIXED:
                    assert value in FIXED[label], (sample.name, label, value)
                elif label not in ("le", "quantile"):
                    assert label in ("store", "transport", "relay", "listener", "operation"), label
                    assert len(value) < 80 and "@" not in value, value  # never an address
    # histograms: each bucket series ends with +Inf, which equals the count
    for family in (f for f in own.values() if f.type == "histogram"):
        counts = {frozenset(x.labels.items()): x.value for x in family.samples if x.name.endswith("_count")}
        for x in family.samples:
            if x.name.endswith("_bucket") and x.labels["le"] == "+Inf":
                rest = frozenset((k, v) for k, v in x.labels.items() if k != "le")
                assert counts[rest] == x.value
    assert s.value("spoolerd_submissions_total", via="smtp", store="local") == 1
    assert s.value("spoolerd_listener_sessions_total", listener="inbound") == 1
    assert s.value("spoolerd_listener_messages_accepted_total", listener="inbound") == 1
    assert s.value("spoolerd_listener_open_sessions", listener="inbound") == 0
    # every store call the two deliveries made was timed: the claims that took them (and any that found
    # nothing due at a wake-up) and two finishes
    assert s.value("spoolerd_store_operation_duration_seconds_count", store="local", operation="claim") >= 1
    assert s.value("spoolerd_store_operation_duration_seconds_count", store="local", operation="finish") == 2


def _queried(dashboard: dict[str, Any]) -> set[str]:
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    exprs.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    return {m for e in exprs for m in re.findall(r"\b((?:spoolerd|process)_[a-z0-9_]+)", e)}


async def test_every_metric_the_dashboard_queries_is_exported(root: Path, daemons: list[Any]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = _queried(dashboard)
    assert len(queried) >= 15 and "spoolerd_relay_up" in queried
    s = await listening(daemons, root)
    exported = set(s.families) | {sample for (sample, _) in s.samples}
    for family in s.families.values():  # a family with no series yet still names its samples
        exported |= {f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_sum", "_count")}
    assert queried - exported == set()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in panels)
    titles = {p["title"] for p in dashboard["panels"] if p["type"] == "row"}
    assert {"Queue", "Outcomes", "Latency", "Relay and store health"} <= titles
