"""The renderings behind spoolerctl, in memory: alignment, hostile text, the flush count."""

from __future__ import annotations

import time

from spoolerd.progress import FlushCount
from spoolerd.views import show_queue, table, watch_line, width


def test_columns_line_up_with_wide_and_combining_characters() -> None:
    text = table([["1", "日本語の件名", "x"], ["2", "cafe\u0301", "y"]], ["ID", "SUBJECT", "N"])
    header, wide, combining = text.splitlines()
    assert width(wide[: wide.index("x")]) == width(combining[: combining.index("y")]) == header.index("N")


def test_text_from_peers_and_messages_cannot_drive_the_terminal() -> None:
    now = time.time()
    row = {
        "id": "7", "store": "local", "age": 5.0, "size": 10, "sender": "a@b\x1b[2J", "subject": "s\x07",
        "due_at": now + 60, "locked": False, "held": False,
        "recipients": [{"address": "c@d", "state": "deferred", "attempts": 1, "last_code": 451,
                        "last_status": "4.3.0", "last_text": "busy\r\n\x1b]0;owned\x07", "transport": "smtp",
                        "next_attempt": now + 60, "waiting": None}],
    }  # fmt: skip
    shown = show_queue([row], now)
    assert not any(ch in shown for ch in "\x1b\x07\r") and "(451 4.3.0 busy   ]0;owned )" in shown
    event = {"type": "failed", "id": "7", "details": [{"recipient": "c@d", "reason": "no\x1b[31m"}]}
    (line,) = watch_line(event)
    assert "\x1b" not in line and line.endswith("  7  failed     c@d  no [31m")


def test_flush_count_counts_each_message_once() -> None:
    count = FlushCount(total=3)
    assert count.seen({"type": "deferred", "id": "1"}) and count.seen({"type": "delivered", "id": "2"})
    assert not count.seen({"type": "delivered", "id": "1"})  # a second outcome of a message already tried
    assert not count.seen({"type": "new_mail", "id": "9"})  # not a download flush
    assert count.line("flushing", 2.0) == "flushing [#############.......] 2/3 messages  2s"
    download = FlushCount(count_received=True)
    assert download.seen({"type": "new_mail", "id": "9"})
    assert download.line("flushing", 0.4) == "flushing: 1 received  0s"


def test_status_changes_read_as_sentences() -> None:
    offline = {"type": "status_changed", "entry_id": "transport:smtp", "state": "offline", "time": 0}
    assert watch_line(offline)[0].endswith("  -  status     -  transport:smtp is offline")
    failing = {"type": "status_changed", "entry_id": "transport:smtp", "state": "failing",
               "last_error": "4.4.1 refused"}  # fmt: skip
    assert watch_line(failing)[0].endswith("  -  status     -  transport:smtp is failing: 4.4.1 refused")
    sending = {"type": "status_changed", "entry_id": "spooler", "state": "active", "was": "online"}
    assert watch_line(sending) == []  # work starting and ending, every attempt: --json has it
    flushing = {**sending, "state": "flushing", "was": "active"}
    assert watch_line(flushing)[0].endswith("  -  status     -  spooler is flushing")


def test_a_store_column_only_when_the_queue_spans_several_stores() -> None:
    def row(store: str, ident: str) -> dict[str, object]:
        return {"id": ident, "store": store, "age": 1.0, "size": 1, "sender": "", "subject": "",
                "due_at": 0.0, "locked": False, "held": False, "recipients": []}  # fmt: skip

    assert show_queue([row("local", "1"), row("local", "2")], 0.0).startswith("QUEUE ID  AGE ")
    two = show_queue([row("local", "1"), row("shared", "1")], 0.0).splitlines()
    assert two[0].startswith("QUEUE ID  STORE   AGE") and two[1].startswith("1         local   1s")
    assert two[2].startswith("1         shared  1s")
