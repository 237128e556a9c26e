"""structlog set-up: the renderer follows the config and credentials never reach the log."""

from __future__ import annotations

import json

import pytest
import structlog

from spoolerd.config import LogConfig
from spoolerd.logsetup import configure_logging


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
