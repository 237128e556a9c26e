"""The mail log's pure parts (status words, reply text, console lines, the Message-ID scan, the
destination cache's down/up decisions), and the expired and report lines from the engine."""

from __future__ import annotations

import json
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from spoolerd import maillog
from spoolerd.config import LogConfig
from spoolerd.envelope import header_message_id
from spoolerd.logsetup import configure_logging
from spoolerd.message import Draft, FolderRole, NewRecipient, RecipientState
from spoolerd.retry import DestinationCache
from tests.conftest import FakeClock
from tests.engine.harness import CONTENT, spooler


@pytest.fixture(autouse=True)
def _reset_structlog() -> object:
    yield
    structlog.reset_defaults()


def test_status_words_follow_postfix() -> None:
    assert maillog.status_of(RecipientState.DELIVERED, "2.0.0") is maillog.Status.SENT
    assert maillog.status_of(RecipientState.DEFERRED, "4.4.1") is maillog.Status.DEFERRED
    assert maillog.status_of(RecipientState.FAILED, "5.1.1") is maillog.Status.BOUNCED
    assert maillog.status_of(RecipientState.FAILED, "4.4.7") is maillog.Status.EXPIRED


def test_reply_text_drops_the_relay_it_names_and_nothing_else() -> None:
    relay = "mx.example.net:25"
    said = f"{relay} said: 250 2.0.0 Ok (in reply to end of DATA)"
    assert maillog.reply_text(said, relay) == "250 2.0.0 Ok (in reply to end of DATA)"
    assert maillog.reply_text(f"{relay}: cannot connect: refused", relay) == "cannot connect: refused"
    assert maillog.reply_text("filed", None) == "filed"
    assert maillog.reply_text(said, "other:25") == said


@pytest.mark.parametrize(
    ("dsn", "event"),
    [("4.7.8", "relay login refused"), ("4.7.5", "relay TLS failed"), ("4.7.4", "relay TLS failed"),
     ("4.4.1", "relay down"), ("4.4.2", "relay down"), (None, "relay down")],
)  # fmt: skip
def test_what_a_failure_without_a_reply_is(dsn: str | None, event: str) -> None:
    assert maillog.problem(dsn) == event


def test_console_renders_mail_lines_like_postfix_on_one_printable_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(LogConfig(level="info", format="console"))
    maillog.delivery(
        queue_id="Q1", message_id="<m@x>", recipient="a@example.net", transport="relay",
        relay="mx.example.net:25", delay=1.234, dsn="2.0.0", status=maillog.Status.SENT,
        reply="250 2.0.0 Ok\x1b[31m",
    )  # fmt: skip
    maillog.accepted(queue_id="Q1", store="local", content=b"Message-ID: <m@x>\r\n\r\nhi\r\n", sender="me@x",
                     recipients=2, via="socket")  # fmt: skip
    structlog.get_logger().info("something else", key="value")
    delivery, accepted, other = capsys.readouterr().err.splitlines()
    assert delivery.endswith(
        "Q1: to=<a@example.net>, transport=relay, relay=mx.example.net:25, delay=1.23, dsn=2.0.0, "
        "status=sent (250 2.0.0 Ok?[31m)"
    )
    assert "[info" in delivery and "queue_id=" not in delivery and "\x1b" not in delivery
    assert accepted.rstrip().endswith(
        "Q1: message-id=<m@x>, from=<me@x>, size=25, nrcpt=2, via=socket, store=local"
    )
    assert "something else" in other and "key=value" in other  # other lines as they were


def test_json_carries_the_same_fields_as_keys(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogConfig(level="info", format="json"))
    maillog.delivery(
        queue_id="Q1", message_id="", recipient="a@example.net", transport="loopback", relay=None,
        delay=0.5, dsn="5.1.1", status=maillog.Status.BOUNCED, reply="no such user",
    )  # fmt: skip
    record = json.loads(capsys.readouterr().err)
    assert record == {
        "event": "delivery", "level": "info", "timestamp": record["timestamp"], "queue_id": "Q1",
        "message_id": "", "recipient": "a@example.net", "transport": "loopback", "relay": None,
        "delay": 0.5, "dsn": "5.1.1", "status": "bounced", "reply": "no such user",
    }  # fmt: skip


def test_the_destination_cache_says_down_once_and_up_once() -> None:
    cache = DestinationCache(hold=300)
    assert cache.failed("relay:mx", now=100.0) is True
    assert cache.failed("relay:mx", now=150.0) is False  # still down: no news
    assert cache.dead_until("relay:mx", 1000.0) is None  # the hold is over ...
    assert cache.failed("relay:mx", now=1000.0) is False  # ... but it is still the same outage
    assert cache.succeeded("relay:other") is None
    assert cache.succeeded("relay:mx") == 100.0  # up again: down since 100
    assert cache.succeeded("relay:mx") is None
    assert cache.failed("relay:mx", now=2000.0) is True  # a new outage


_FIELD_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)


@given(
    before=st.lists(st.sampled_from([b"From: a@b", b"Subject: x", b"X-Message-ID-Not: y", b"Received: z"])),
    value=st.lists(_FIELD_TEXT, min_size=1, max_size=4),
    folds=st.lists(st.sampled_from([b" ", b"\r\n ", b"\n\t", b"  "]), min_size=3, max_size=3),
    name=st.sampled_from([b"Message-ID", b"message-id", b"MESSAGE-Id"]),
    newline=st.sampled_from([b"\r\n", b"\n"]),
)
def test_message_id_scan_agrees_with_the_email_parser(
    before: list[bytes], value: list[str], folds: list[bytes], name: bytes, newline: bytes
) -> None:
    raw = b"".join(v.encode() + (folds[i] if i < len(value) - 1 else b"") for i, v in enumerate(value[:4]))
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", newline)
    header = b"".join(line + newline for line in [*before, name + b": " + raw, b"To: c@d"])
    content = header + newline + b"Message-ID: <in the body>" + newline
    parsed = BytesHeaderParser(policy=compat32).parsebytes(content)["message-id"]
    assert header_message_id(content) == " ".join(str(parsed).split())


@given(st.binary(max_size=300))
def test_message_id_scan_is_one_printable_line_whatever_the_bytes(content: bytes) -> None:
    found = header_message_id(b"Message-ID: " + content)
    assert found.isprintable() and "\n" not in found and found == found.strip()


def test_no_message_id() -> None:
    assert header_message_id(b"From: a@b\r\n\r\nMessage-ID: <body>\r\n") == ""
    assert header_message_id(b"") == ""


async def test_expired_and_report_lines_from_the_engine(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": {"provider": "test-scripted", "temp_fail": ["x@remote.test"]}}
    async with spooler(tmp_path, clock, transports) as h:
        with capture_logs() as lines:
            mid = await h.submit("x@remote.test")
            await h.spooler.flush(message_ids=[mid])
            clock.advance(5 * 86400)
            await h.spooler.flush(message_ids=[mid])
            await h.finished(mid)
    deliveries = [line for line in lines if line["event"] == "delivery"]
    assert [(d["status"], d["dsn"]) for d in deliveries] == [("deferred", "4.3.0"), ("expired", "4.4.7")]
    assert deliveries[1]["delay"] == pytest.approx(5 * 86400) and deliveries[1]["queue_id"] == mid
    assert "delivery time expired" in deliveries[1]["reply"]
    (report,) = [line for line in lines if line["event"] == "report filed"]
    assert (report["queue_id"], report["report"], report["nrcpt"], report["store"]) == (
        mid,
        "ndr",
        1,
        "local",
    )


async def test_a_coupled_store_hand_over_logs_its_outcomes(tmp_path: Path, clock: FakeClock) -> None:
    stores = {"local": {"provider": "sqlite", "addresses": ["@localhost"], "coupled_transport": "loopback"}}
    async with spooler(tmp_path, clock, stores=stores, spooler={"preprocessors": []}) as h:
        outbox = await h.store.folder(FolderRole.OUTBOX)
        draft = Draft(CONTENT, [NewRecipient("alice@localhost")], sender="me@localhost")
        mid = await h.store.create_message(outbox.id, draft)
        with capture_logs() as lines:
            result = await h.daemon.submitter.submit("local", mid)
    assert not result.queued  # delivered inside submit, not by the spooler
    (line,) = [line for line in lines if line["event"] == "delivery"]
    assert (line["queue_id"], line["recipient"], line["transport"]) == (mid, "alice@localhost", "loopback")
    assert (line["status"], line["relay"]) == ("sent", None) and line[
        "delay"
    ] == 0.0  # sent as it was submitted
