"""structlog set-up: the renderer follows the config and credentials never reach the log."""

from __future__ import annotations

import json
import logging
import re

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from spoolerd import logsetup, maillog
from spoolerd.config import LogConfig
from spoolerd.logsetup import ConsoleLines, configure_logging, mail_lines
from spoolerd.maillog import console_text


@pytest.fixture(autouse=True)
def _reset_structlog() -> object:
    yield
    structlog.reset_defaults()


def test_json_lines_with_secrets_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogConfig(level="info", format="json"))
    log = structlog.get_logger()
    log.info("login", user="alice", password="hunter2", smtp_token="abc", Authorization="Bearer x")
    log.debug("hidden at info level")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "login" and record["user"] == "alice" and record["level"] == "info"
    assert record["password"] == record["smtp_token"] == record["Authorization"] == "***"
    assert "hunter2" not in lines[0]


def test_console_renderer_and_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogConfig(level="debug", format="console"))
    structlog.get_logger().debug("queue scanned", messages=3, secret="s3cr3t")
    err = capsys.readouterr().err
    assert "queue scanned" in err and "messages=3" in err
    assert "s3cr3t" not in err


def test_mail_lines_in_the_console_keep_only_their_own_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """A mail line in the console shows its template, never a stray credential passed along with it."""
    configure_logging(LogConfig(level="info", format="console"))
    structlog.get_logger().info(
        "accepted", queue_id="Q9", store="local", message_id="", sender="me@x", size=3, nrcpt=1,
        via="socket", password="hunter2", auth="PLAIN aHVudGVyMg==",
    )  # fmt: skip
    err = capsys.readouterr().err
    assert "Q9: message-id=none, from=<me@x>, size=3, nrcpt=1, via=socket, store=local" in err
    assert "hunter2" not in err and "aHVudGVyMg" not in err


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(
    level=st.sampled_from(["debug", "info", "warning", "error", "critical"]),
    recipient=_TEXT,
    reply=_TEXT,
    delay=st.floats(min_value=0, max_value=1e6),
)
def test_a_mail_line_is_rendered_as_the_console_renderer_would(
    level: str, recipient: str, reply: str, delay: float
) -> None:
    """The shortcut for mail lines gives what structlog's ConsoleRenderer makes of the same line."""
    event = {
        "timestamp": "2026-11-30T23:22:54.489611Z", "level": level, "event": "delivery", "queue_id": "Q1",
        "message_id": "<m@x>", "recipient": recipient, "transport": "relay", "relay": "127.0.0.1:25",
        "delay": delay, "dsn": "2.0.0", "status": "sent", "reply": reply,
    }  # fmt: skip
    assert console_text(dict(event)) is not None
    expected = structlog.dev.ConsoleRenderer(colors=False)(None, level, mail_lines(None, level, dict(event)))
    assert ConsoleLines(colors=False)(None, level, dict(event)) == expected
    other = {"timestamp": "t", "level": level, "event": "queue scanned", "messages": 3}
    assert ConsoleLines(colors=False)(None, level, dict(other)) == structlog.dev.ConsoleRenderer(
        colors=False
    )(None, level, dict(other))


def _mail_lines() -> None:
    """Two mail lines the console shows as text, one warning it shows as key=value."""
    maillog.delivery(
        queue_id="Q1", message_id="<m@x>", recipient="a@example.net", transport="relay", relay="mx:25",
        delay=1.2, dsn="2.0.0", status=maillog.Status.SENT, reply="250 ok",
    )  # fmt: skip
    maillog.accepted(
        queue_id="Q2", store="local", content=b"Message-ID: <m@x>\r\n\r\nbody\r\n", sender="s@example.org",
        recipients=2, via="smtp", listener="l", client="127.0.0.1", tls=None, user="bob",
    )  # fmt: skip
    maillog.relay_down(transport="relay", relay="mx:25", dsn="4.4.1", reason="connection refused")


class _NoStructlog:
    def log(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("a console mail line went through structlog")


@pytest.mark.parametrize("level", ["info", "warning"])
def test_mail_lines_written_directly_are_the_lines_structlog_writes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    """The console's mail lines skip structlog's chain (``MailLines``): the same lines come out, level
    filtering included, and only the time differs."""
    configure_logging(LogConfig(level=level, format="console"))
    with monkeypatch.context() as patched:
        patched.setattr(maillog, "log", _NoStructlog())
        maillog.delivery(
            queue_id="Q0", message_id="", recipient="b@example.net", transport=None, relay=None, delay=0.0,
            dsn="4.4.1", status=maillog.Status.DEFERRED, reply="no answer",
        )  # fmt: skip
    capsys.readouterr()
    _mail_lines()
    direct = capsys.readouterr().err.splitlines()
    maillog.direct_writer(None)
    _mail_lines()
    through_structlog = capsys.readouterr().err.splitlines()
    assert len(direct) == (3 if level == "info" else 1)
    assert [line.split(" ", 1)[1] for line in direct] == [line.split(" ", 1)[1] for line in through_structlog]
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \[", line) for line in direct)


def test_a_workers_mail_lines_say_which_worker_it_is_either_way(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery worker's console mail lines end in ``, worker=K``, written directly or by structlog."""
    configure_logging(LogConfig(level="info", format="console"))
    monkeypatch.setitem(logsetup._PROCESS_KEYS, "worker", 1)  # as log_as_worker(1), undone after
    with structlog.contextvars.bound_contextvars(worker=1):
        _mail_lines()
        direct = capsys.readouterr().err.splitlines()
        maillog.direct_writer(None)
        _mail_lines()
        through_structlog = capsys.readouterr().err.splitlines()
    assert direct[0].endswith("status=sent (250 ok), worker=1")
    assert direct[1].endswith("user=bob, worker=1")
    assert [line.split(" ", 1)[1] for line in direct] == [line.split(" ", 1)[1] for line in through_structlog]


def test_mail_lines_reach_structlog_while_it_is_configured_otherwise(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(LogConfig(level="info", format="console"))
    with capture_logs() as captured:
        _mail_lines()
    assert [e["event"] for e in captured] == ["delivery", "accepted", "relay down"]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("form", ["json", "console"])
def test_a_library_warning_is_a_line_of_the_log_like_ours(
    form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """aiosmtpd, asyncpg and aiosmtplib log through ``logging``: their warnings come out in the log's own
    format (found by a first-day trial: a raw line in a JSON log), secrets redacted, below warning not at
    all, and aiosmtpd's notice at each AUTH of its own deprecated attribute not at all."""
    configure_logging(LogConfig(level="info", format=form))  # type: ignore[arg-type]
    library = logging.getLogger("mail.log")
    library.warning("peer %s misbehaved", "192.0.2.1", extra={"password": "hunter2", "event": "x"})
    library.info("chatter")
    library.warning("Session.login_data is deprecated and will be removed in version 2.0")
    library.warning("%s unrecognised", "FOO\rBAR\x1b[31m")  # a peer's words: no terminal escapes
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        library.exception("session failed")
    first, peer, failed, *trace = capsys.readouterr().err.strip().splitlines()
    assert "peer 192.0.2.1 misbehaved" in first and "hunter2" not in first  # extras are not shown
    assert "\x1b" not in peer and "\r" not in peer and "FOO" in peer
    assert "session failed" in failed
    if form == "json":
        record = json.loads(first)
        assert record["level"] == "warning" and record["logger"] == "mail.log"
        assert "password" not in record and record["event"] == "peer 192.0.2.1 misbehaved"
        error = json.loads(failed)
        assert "ZeroDivisionError" in error["exception"] and "Traceback" in error["exception"]
        assert trace == []
    else:
        assert any("ZeroDivisionError" in line for line in trace)
