"""Options a message's header fields ask for (spoolerd/message_options.py), and, against a running
daemon, that every submission path honours them: a Deferred-Delivery date keeps the message queued
until then; a priority is the message's PR_PRIORITY."""

from __future__ import annotations

import email.utils
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolerd.message_options import _parsed_values, _values, header_deferred_delivery, header_priority
from tests.control.conftest import Daemon, serving, short_root
from tests.control.test_tools import ctl, run, sendmail


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (b"Priority: urgent\r\n", 1),
        (b"Priority: Non-Urgent\r\nX-Priority: 1\r\n", -1),  # Priority first
        (b"X-Priority: 1 (Highest)\r\n", 1),
        (b"X-Priority: 3\r\n", 0),
        (b"X-Priority: 5 (Lowest)\r\nImportance: high\r\n", -1),
        (b"Importance: low\r\n", -1),
        (b"Importance:\r\n high\r\n", 1),  # folded
        (b"Priority: whenever\r\n", 0),  # not understood: normal
        (b"Subject: Priority: urgent\r\n", None),
        (b"", None),
    ],
)
def test_priority_from_the_header_fields(fields: bytes, expected: int | None) -> None:
    assert header_priority(b"From: a@b\r\n" + fields + b"\r\nPriority: urgent\r\n") == expected


def test_deferred_delivery_is_a_date() -> None:
    when = 1_900_000_000
    dated = email.utils.formatdate(when).encode()
    assert header_deferred_delivery(b"Deferred-Delivery: " + dated + b"\n\nbody") == when
    assert header_deferred_delivery(b"Deferred-Delivery: tomorrow\n\nbody") is None
    assert header_deferred_delivery(b"Deferred-Delivery: Mon, 1 Jan 2035 11:00:00 +0100\n\nx") == 2051258400
    assert header_deferred_delivery(b"Subject: x\n\nDeferred-Delivery: " + dated) is None  # the body


@given(st.binary(max_size=300))
def test_any_bytes_give_an_answer_not_an_error(content: bytes) -> None:
    assert header_priority(content) in (None, -1, 0, 1)
    header_deferred_delivery(content)


_NAMES = ["Priority", "x-PRIORITY", "Importance", "Deferred-Delivery", "Subject", "From", "Prior", ""]
_HEADER = st.lists(
    st.tuples(
        st.sampled_from(_NAMES), st.sampled_from(["", " ", "\t"]), st.text("urgent 1\t\r\n:", max_size=12)
    ),
    max_size=6,
)


@given(_HEADER, st.sampled_from([b"\r\n", b"\n"]), st.binary(max_size=40))
def test_the_quick_look_for_option_fields_misses_none(
    fields: list[tuple[str, str, str]], eol: bytes, body: bytes
) -> None:
    """A header section with no option field is answered without splitting it: the same answer as the
    full read, whatever the names' case, the blanks before a colon, folding or the body."""
    head = eol.join(f"{name}{blank}:{value}".encode() for name, blank, value in fields)
    content = head + eol + eol + body
    assert _values(content) == _parsed_values(content)


async def test_sendmail_honours_deferred_delivery_and_priority() -> None:
    """Seed 004's per-message properties through sendmail: the message waits for its deferred send
    time (a flush does not send it early) and carries the priority its header asks for."""
    async with serving(Daemon(short_root())) as d:
        later = time.time() + 3600
        message = (
            f"To: x@remote.test\nSubject: later\nPriority: urgent\n"
            f"Deferred-Delivery: {email.utils.formatdate(later)}\n\nbody\n"
        ).encode()
        argv, env = sendmail(d, "-t")
        assert (await run(*argv, stdin=message, env=env)).returncode == 0
        await run(*ctl(d, "flush"), check=True)
        (row,) = json.loads((await run(*ctl(d, "--json", "queue"), check=True)).stdout)
        assert abs(row["due_at"] - later) < 2 and row["priority"] == 1, row


async def test_spoolerctl_submit_sets_the_per_message_options() -> None:
    """The same options through the control socket (``spoolerctl submit``): a delivery report asked
    for, no NDR, a priority over the header's, a deferred send time; and a bad duration is refused as
    a usage error before anything is sent."""
    async with serving(Daemon(short_root())) as d:
        path = d.root / "message.eml"
        path.write_bytes(b"To: x@remote.test\nSubject: options\nPriority: urgent\n\nbody\n")
        args = ("--dr", "--no-ndr", "--priority", "non-urgent", "--not-before", "2h", str(path))
        await run(*ctl(d, "submit", *args), check=True)
        (row,) = json.loads((await run(*ctl(d, "--json", "queue"), check=True)).stdout)
        assert row["priority"] == -1 and abs(row["due_at"] - (time.time() + 7200)) < 60, row
        fetched = json.loads((await run(*ctl(d, "--json", "cat", row["id"]), check=True)).stdout)
        assert (fetched["dr_requested"], fetched["ndr_requested"]) == (True, False), fetched
        bad = await run(*ctl(d, "submit", "--not-before", "soon", str(path)))
        assert bad.returncode == 2 and b"not a duration" in bad.stderr  # EXIT_USAGE
