"""structlog set-up: the renderer follows the config and credentials never reach the log."""

from __future__ import annotations

import json

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

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
