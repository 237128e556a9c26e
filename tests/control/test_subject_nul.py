"""A NUL (or any control character) inside an encoded Subject does not refuse the message (#13 part 7):
the message is kept byte for byte as submitted, and the subject the store keeps and shows has a space
where the control character was."""

from __future__ import annotations

import base64

from tests.control.conftest import Daemon

MESSAGE = (
    b"From: me@localhost\r\nTo: alice@localhost\r\nDate: Mon, 30 Nov 2026 12:00:00 +0000\r\n"
    b"Message-ID: <nul@localhost>\r\nSubject: =?utf-8?q?a=00b?=\r\n\r\nbody\r\n"
)


async def test_a_nul_in_an_encoded_subject_is_accepted_byte_exact(daemon: Daemon) -> None:
    c = await daemon.client()
    sub = await c.ok("submit", message=base64.b64encode(MESSAGE).decode(), not_before=4_000_000_000.0)
    (row,) = await c.ok("queue", ids=[sub["id"]])
    assert row["subject"] == "a b"
    fetched = await c.ok("fetch", id=sub["id"])
    assert base64.b64decode(fetched["content"]) == MESSAGE
