"""The sans-io part of webhooks, in memory: what an attempt's events say (property-tested over any
decision), which webhooks get them, how they are signed, and what the config refuses."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from spoolerd.delivery.decide import decide
from spoolerd.delivery.settings import DeliverySettings
from spoolerd.dsn import RecipientStatus
from spoolerd.errors import ConfigError
from spoolerd.message import Message, RecipientState, RecipientUpdate
from spoolerd.retry import RetryPolicy
from spoolerd.webhooks.events import WebhookEvents, delay_events, outcome_events, signature, signed_headers
from spoolerd.webhooks.settings import EventKind, WebhookSection
from tests.engine.test_decide import T0, messages, policies, tried_for

KIND_OF_STATE = {
    RecipientState.DELIVERED: {EventKind.DELIVERED},
    RecipientState.FAILED: {EventKind.BOUNCED, EventKind.EXPIRED},
    RecipientState.DEFERRED: {EventKind.DEFERRED},
}


@given(st.data(), messages(), policies, st.floats(0.0, 30 * 86400.0))
def test_each_recorded_outcome_is_one_event_that_says_what_was_recorded(
    data: st.DataObject, message: Message, retry: RetryPolicy, elapsed: float
) -> None:
    now = T0 + elapsed
    decision = decide(message, tried_for(data, message), now, DeliverySettings(retry=retry))
    ids = iter(range(1000))
    events = outcome_events(
        "local", message, decision.pending, decision.updates, now=now, new_id=lambda: f"e{next(ids)}"
    )
    assert len(events) == len(decision.updates)  # the pending recipients have no final state yet
    by_index = {r.index: r for r in message.recipients}
    for event, update in zip(events, decision.updates, strict=True):
        r = by_index[update.index]
        assert event.event in KIND_OF_STATE[update.state]
        assert (event.event is EventKind.EXPIRED) == (
            update.state is RecipientState.FAILED and update.status == "4.4.7"
        )
        assert (event.recipient, event.dsn, event.code, event.attempt) == (
            r.address,
            update.status,
            update.code,
            r.attempts + 1,
        )
        assert (event.queue_id, event.store, event.time, event.next_attempt) == (
            "Q1",
            "local",
            now,
            update.next_attempt,
        )
        body = json.loads(event.payload())
        assert (
            body["event"] == event.event.value and body["recipient"] == r.address and body["id"] == event.id
        )
    assert len({e.id for e in events}) == len(events)


@given(messages())
def test_a_recipient_already_final_gets_no_second_event(message: Message) -> None:
    final = [r for r in message.recipients if r.state.final]
    updates = [RecipientUpdate(r.index, RecipientState.DELIVERED) for r in final]
    assert outcome_events("local", message, message.recipients, updates, now=T0) == []


@given(messages())
def test_a_delay_warning_is_one_event_per_recipient_it_names(message: Message) -> None:
    statuses = [RecipientStatus(r.address, "4.2.0", 451, "busy", T0) for r in message.recipients[:2]]
    events = delay_events("local", message, statuses, now=T0)
    assert [(e.event, e.recipient, e.dsn, e.code, e.reply) for e in events] == [
        (EventKind.DELAYED, s.address, "4.2.0", 451, "busy") for s in statuses
    ]


@given(messages())
def test_each_webhook_gets_the_kinds_it_asked_for_with_the_same_body(message: Message) -> None:
    statuses = [RecipientStatus(message.recipients[0].address, "4.2.0")]
    hooks = WebhookEvents(
        {"all": list(EventKind), "bounces": [EventKind.BOUNCED], "delays": [EventKind.DELAYED]}
    )
    written = hooks.for_delay("local", message, statuses, now=T0)
    assert sorted(e.webhook for e in written) == ["all", "delays"]
    assert written[0].payload == written[1].payload and written[0].message_id == "Q1"
    woken: list[str] = []
    hooks.on_written.append(woken.append)
    hooks.written("local", [])
    hooks.written("local", written)
    assert woken == ["local"]  # nothing written, nobody woken


@given(st.binary(min_size=1), st.binary(), st.integers(0, 2**40))
def test_the_signature_is_hmac_sha256_of_timestamp_dot_body(secret: bytes, body: bytes, now: int) -> None:
    headers = dict(signed_headers(secret, body, now + 0.7))
    stamp = headers["X-Spoolerd-Timestamp"]
    assert stamp == str(now)
    expected = hmac.new(secret, f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["X-Spoolerd-Signature"] == f"sha256={expected}"
    assert signature(secret, stamp, body + b"x") != headers["X-Spoolerd-Signature"]


@pytest.mark.parametrize(
    "url",
    [
        "http://h/a\r\nX-Evil: 1",
        "http://h/a b",
        "ftp://h/",
        "http:///path",
        "http://u:p@h/",
        "http://h:99999/",
    ],
)
def test_a_url_that_could_smuggle_or_cannot_be_posted_to_is_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        WebhookSection(url=url, secret_env="S")


def test_exactly_one_secret_and_it_must_be_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for secrets in ({}, {"secret_env": "S", "secret_file": tmp_path / "s"}):
        with pytest.raises(ValidationError, match="secret_file or secret_env"):
            WebhookSection(url="https://example.net/hook", **secrets)
    (tmp_path / "s").write_bytes(b"first line\nsecond\n")
    assert WebhookSection(url="http://h/", secret_file=tmp_path / "s").secret() == b"first line"
    monkeypatch.delenv("SPL_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ConfigError, match="SPL_WEBHOOK_SECRET is not set"):
        WebhookSection(url="http://h/", secret_env="SPL_WEBHOOK_SECRET").secret()
    with pytest.raises(ConfigError, match="secret_file: cannot read"):
        WebhookSection(url="http://h/", secret_file=tmp_path / "missing").secret()


def test_a_daemon_with_workers_wakes_its_senders_on_other_processes_commits_only() -> None:
    """Its own finishes wake the senders only when they wrote events (``WebhookEvents``); a claim per
    own finish would be a write transaction per message for nothing."""
    from spoolerd.events import NewMail, QueueChanged
    from spoolerd.message import MessageFlag
    from spoolerd.webhooks.service import _written_elsewhere

    assert _written_elsewhere(QueueChanged("q", "external"))  # SQLite: another process's commit
    assert _written_elsewhere(QueueChanged("q", "finish"))  # PostgreSQL: another daemon's finishes
    assert not _written_elsewhere(QueueChanged("q", "finish", "m1"))  # this process's own
    assert not _written_elsewhere(QueueChanged("q", "submit", "m1"))
    assert not _written_elsewhere(NewMail("q", "m2", "f1", "IPM.Note", MessageFlag(0)))
