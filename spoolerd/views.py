"""What ``spoolerctl`` shows people: the queue as ``mailq`` shows it, one line per event for ``watch``,
and the aligned tables. Pure functions of the control socket's answers and a clock, no I/O.

Every cell goes through ``one_line``: subjects, addresses and a peer's reply text come from outside,
and a control character in them must not reach the operator's terminal.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from .envelope import one_line
from .store import lease_daemon

__all__ = ["age", "clock_time", "show_queue", "table", "watch_line", "width"]


def table(
    rows: Sequence[Sequence[Any]], header: Sequence[str], notes: Mapping[int, Sequence[str]] | None = None
) -> str:
    """Columns aligned under ``header``; ``notes[i]``: lines printed after row ``i``, indented to the
    last column (free text too long for a column: a peer's reply, what a recipient waits for)."""
    cells = [
        [str(c) for c in header],
        *[["" if c is None else one_line(str(c)) for c in row] for row in rows],
    ]
    widths = [max(width(r[i]) for r in cells) for i in range(len(header))]
    indent = " " * (sum(widths[:-1]) + 2 * len(widths))
    lines = []
    for i, r in enumerate(cells):
        lines.append("  ".join(c + " " * (w - width(c)) for c, w in zip(r, widths, strict=True)).rstrip())
        lines += [indent + one_line(n) for n in (notes or {}).get(i - 1, ())]
    return "\n".join(lines)


def width(text: str) -> int:
    """Terminal columns: East Asian wide characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    wide = ("W", "F")
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in wide else 1
        for ch in text
    )


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def clock_time(when: float, now: float) -> str:
    """A local time as a person reads it: the time of day, with the date when it is not today."""
    fmt = "%H:%M:%S" if time.localtime(when)[:3] == time.localtime(now)[:3] else "%b %d %H:%M"
    return time.strftime(fmt, time.localtime(when))


def _next_try(when: float | None, now: float) -> str:
    if when is None:
        return ""
    if when <= now:
        return "now"
    return f"{clock_time(when, now)} (in {age(when - now)})"


def _reply(code: Any, status: Any, text: Any) -> str:
    return " ".join(str(x) for x in (code, status, text) if x)


def _waiting(waiting: Mapping[str, Any], now: float) -> str:
    if waiting.get("rate") is not None:  # as a flush says it: "rate limit 3/1m to DEST: waits its turn"
        turn = waiting.get("until")
        when = f" at {clock_time(turn, now)}" if turn is not None else ""
        where = f"{waiting['destination']} via {waiting['transport']}"
        return f"waiting: rate limit {waiting['rate']} to {where}: its turn{when}"
    if waiting.get("destination") is None:
        return f"waiting: transport {waiting['transport']} is offline"
    until = waiting.get("until")
    when = f" until {clock_time(until, now)}" if until is not None else ""
    return f"waiting: {waiting['destination']} via {waiting['transport']} is down{when}"


QUEUE_HEADER = ("QUEUE ID", "STORE", "AGE", "SIZE", "STATE", "TRIES", "NEXT TRY", "SENDER / RECIPIENT")


def show_queue(rows: Sequence[Mapping[str, Any]], now: float | None = None) -> str:
    """The queue like ``mailq``: a row per message (id, age, size, sender, subject), a row per recipient
    (state, tries, next try), and under it, in parentheses, the last reply and what it is waiting for.
    The STORE column appears when the queue spans several stores (ids are unique within one)."""
    if not rows:
        return "Mail queue is empty"
    now = time.time() if now is None else now
    body: list[list[Any]] = []
    notes: dict[int, list[str]] = {}
    for r in rows:
        flag, state = ("*", "sending") if r["locked"] else ("!", "held") if r.get("held") else (" ", "queued")
        due = None if r.get("held") or r["locked"] else r.get("due_at")
        subject = f'  "{r["subject"]}"' if r.get("subject") else ""
        body.append([r["id"] + flag, r.get("store"), age(r["age"]), r["size"], state, "",
                     _next_try(due, now), f"<{r['sender']}>{subject}"])  # fmt: skip
        if r.get("locked_by") and not r.get("locked_here"):  # a shared store: another daemon has it
            notes[len(body) - 1] = [f"(being delivered by {lease_daemon(r['locked_by'])})"]
        elif r["recipients"] is None:
            notes[len(body) - 1] = ["(being delivered now)"]
        for rcpt in r["recipients"] or []:
            final = rcpt["state"] in ("delivered", "failed")
            when = None if final or due is None else max(rcpt.get("next_attempt") or 0.0, due)
            blank = ["", "", "", ""]  # id, store, age, size: the message's
            body.append(
                [*blank, rcpt["state"], rcpt["attempts"], _next_try(when, now), "  " + rcpt["address"]]
            )
            lines = []
            last = _reply(rcpt.get("last_code"), rcpt.get("last_status"), rcpt.get("last_text"))
            if last:
                lines.append(f"({last})")
            if rcpt.get("waiting") and not final:
                lines.append(f"({_waiting(rcpt['waiting'], now)})")
            notes[len(body) - 1] = lines
    size = sum(r["size"] for r in rows)
    footer = f"-- {len(rows)} message(s), {size} bytes; * = being delivered, ! = held"
    header: Sequence[str] = QUEUE_HEADER
    if len({r.get("store") for r in rows}) == 1:
        header, body = [header[0], *header[2:]], [[row[0], *row[2:]] for row in body]
    return table(body, header, notes) + "\n" + footer


def _timestamp(event: Mapping[str, Any]) -> str:
    when = event.get("time")
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when if isinstance(when, int | float) else None))


def watch_line(event: Mapping[str, Any]) -> list[str]:
    """``spoolerctl watch``: one line per recipient outcome, per queue change, per new mail, per status
    change (none for work starting and ending), each ``TIME  QUEUE-ID  EVENT  RECIPIENT  REASON`` ('-'
    where an event has none)."""
    kind = str(event.get("type", "?"))
    stamp = _timestamp(event)
    ident = str(event.get("id") or "-")

    def line(what: str, recipient: str, reason: str) -> str:
        return one_line(f"{stamp}  {ident}  {what:<9}  {recipient or '-'}  {reason}".rstrip())

    if kind in ("delivered", "deferred", "failed"):
        details = event.get("details")
        if not details:  # a daemon without per-recipient detail: the count
            return [line(kind, "-", f"{event.get('recipients', '?')} recipient(s)")]
        out = []
        for d in details:
            reason = _reply(d.get("code"), d.get("status"), d.get("reason"))
            if kind == "deferred" and d.get("next_attempt"):
                reason += f"; next try {clock_time(d['next_attempt'], time.time())}"
            via = f" via {d['transport']}" if d.get("transport") else ""
            out.append(line(kind, d.get("recipient", "-"), reason + via))
        return out
    if kind == "queue_changed":
        return [line("queue", "-", f"{event.get('reason', '')} in {event.get('store', '?')}")]
    if kind == "new_mail":
        return [line("new mail", "-", f"{event.get('class', '')} in {event.get('store', '?')}")]
    if kind == "status_changed":  # a status row's new state: online, offline, active, flushing, failing
        if {event.get("was"), event.get("state")} <= {"online", "active"}:
            return []  # work starting and ending, every attempt: for --json, not for a reader
        why = f": {event['last_error']}" if event.get("last_error") else ""
        entry = event.get("entry_id") or event.get("name", "?")
        return [line("status", "-", f"{entry} is {event.get('state', '?')}{why}")]
    if kind == "subscribed":
        return [line("watching", "-", "stores " + ", ".join(event.get("stores", [])))]
    rest = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("type", "id"))
    return [line(kind, "-", rest)]
