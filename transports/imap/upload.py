"""Upload: APPEND a message into a mailbox, as an outcome for the recipients it stands for, on the
account's upload connection (``Uploader``).

What an APPEND's answer means (RFC 3501 6.3.11, response codes of RFC 4315 and RFC 5530):
OK is delivered (with the new UID when the server says it); NO [TRYCREATE] creates the mailbox once, when
allowed; [OVERQUOTA], [INUSE], [LIMIT], [UNAVAILABLE] and [SERVERBUG] are worth another try later; a
message the server will never take ([TOOBIG], [NOPERM], [CANNOT], BAD) fails for good; any other NO is
taken as temporary, as RFC 3501 gives NO no permanence.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aioimaplib.aioimaplib import Response

from spoolerd.envelope import without_bcc
from spoolerd.lines import crlf
from spoolerd.message import Message
from spoolerd.transport import Outcome, OutcomeKind

from .session import CommandFailed, ImapError, LoginRefused, Session
from .settings import ImapSettings
from .wire import header_fields, last_line, parse_appenduid, response_code, uid_set

__all__ = ["Uploader", "append_outcome"]

# response code -> the SMTP-style reply code and enhanced status the spooler and its reports speak
_TEMPORARY = {
    "OVERQUOTA": (452, "4.2.2"),
    "INUSE": (450, "4.2.0"),
    "LIMIT": (452, "4.3.1"),
    "UNAVAILABLE": (451, "4.4.2"),  # the server as a whole: the spooler holds it as down for a while
    "SERVERBUG": (451, "4.3.0"),
    "EXPUNGEISSUED": (450, "4.2.0"),
}
_PERMANENT = {
    "TOOBIG": (552, "5.3.4"),
    "NOPERM": (550, "5.7.1"),
    "CANNOT": (550, "5.2.0"),
    "TRYCREATE": (550, "5.2.0"),  # only when creating the mailbox is not allowed or did not help
    "ALREADYEXISTS": (550, "5.2.0"),
    "NONEXISTENT": (550, "5.1.1"),
    "PARSE": (554, "5.6.0"),
}


def append_outcome(response: Response, mailbox: str, peer: str) -> Outcome:
    """The outcome of one APPEND, from its tagged response."""
    text = last_line(response)
    code = response_code(text)
    if response.result == "OK":
        uid = parse_appenduid(text)
        where = f"appended to {mailbox} on {peer}" + (f" as UID {uid[1]}" if uid else "")
        return Outcome.delivered(where)
    what = f"{peer} refused APPEND to {mailbox}: {response.result}" + (
        f" [{code.name}] {code.text}" if code.name else f" {code.text}"
    )
    if response.result == "BAD":
        return Outcome.failed(what, 554, "5.5.2")
    if code.name in _PERMANENT:
        return Outcome.failed(what, *_PERMANENT[code.name])
    reply, status = _TEMPORARY.get(code.name, (450, "4.2.0"))
    return Outcome.deferred(what, reply, status)


class Uploader:
    """The upload connection of one account: kept open between messages and replaced once when found
    dead; one APPEND at a time. Counts ``uploaded`` and ``sent_copies`` in the transport's counters."""

    def __init__(
        self,
        settings: ImapSettings,
        connect: Callable[[], Awaitable[Session]],
        counters: dict[str, int],
    ) -> None:
        self.settings = settings
        self.peer = settings.peer
        self._connect = connect
        self._counters = counters
        self._session: Session | None = None
        self._lock = asyncio.Lock()
        self._appended: OrderedDict[tuple[str, bytes], Outcome] = OrderedDict()  # recent uploads

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        self._session = None

    async def upload(self, message: Message) -> Outcome:
        """One copy of ``message`` (Bcc removed) in ``upload_mailbox``: the outcome of its recipients."""
        assert self.settings.upload_mailbox is not None
        # CRLF first, as the smtp transport sends it (a header's lone CR folded), then the Bcc judged
        content = without_bcc(crlf(message.content))
        key = (message.id, hashlib.sha256(content).digest())
        outcome = self._appended.get(key)
        if outcome is None:
            # maybe tried before (by this daemon, or by one killed with the APPEND's answer in
            # flight, which left no attempt recorded): that APPEND may have landed
            outcome = await self._present(content, self.settings.upload_mailbox)
        if outcome is None:  # one copy per message, also for recipients that reach us a round later
            outcome = await self._append(content, self.settings.upload_mailbox)
            if outcome.kind is OutcomeKind.DELIVERED:
                self._counters["uploaded"] += 1
        if outcome.kind is OutcomeKind.DELIVERED:
            self._appended[key] = outcome
            while len(self._appended) > 1000:
                self._appended.popitem(last=False)
        return outcome

    async def _append(self, content: bytes, mailbox: str, flags: str | None = None) -> Outcome:
        """APPEND on the upload connection: a dead kept connection is replaced once (after checking
        that the APPEND did not land before it died), and a missing mailbox is created once
        (``create_mailboxes``)."""
        async with self._lock:
            created = False
            for _ in range(3):
                fresh = self._session is None or not self._session.alive
                try:
                    if fresh:
                        self._session = await self._connect()
                    assert self._session is not None
                    response = await self._session.append(content, mailbox, flags)
                except LoginRefused as exc:
                    return Outcome.deferred(str(exc), None, "4.7.0")
                except ImapError as exc:
                    self._session = None
                    if fresh:
                        return Outcome.deferred(str(exc), None, "4.4.2")
                    # the kept connection had died, maybe with the APPEND sent: once more on a new one
                    earlier = await self._present_locked(content, mailbox)
                    if earlier is not None:
                        return earlier
                    continue
                outcome = append_outcome(response, mailbox, self.peer)
                trycreate = response.result == "NO" and response_code(last_line(response)).name == "TRYCREATE"
                if trycreate and self.settings.create_mailboxes and not created:
                    try:
                        await self._session.create(mailbox)
                    except CommandFailed as exc:
                        return Outcome.failed(f"could not create {mailbox}: {exc}", 550, "5.2.0")
                    except ImapError as exc:
                        self._session = None
                        return Outcome.deferred(str(exc), None, "4.4.2")
                    created = True
                    continue
                return outcome
            return Outcome.deferred(f"{self.peer}: APPEND to {mailbox} did not complete", None, "4.4.2")

    async def _present(self, content: bytes, mailbox: str) -> Outcome | None:
        async with self._lock:
            return await self._present_locked(content, mailbox)

    async def _present_locked(self, content: bytes, mailbox: str) -> Outcome | None:
        """Delivered, if ``mailbox`` already holds a message with this one's Message-ID and size (an earlier
        APPEND whose answer was lost); None if not, or if that cannot be told."""
        message_id = header_fields(content, ["MESSAGE-ID"]).get("MESSAGE-ID")
        if not message_id:
            return None
        try:
            if self._session is None or not self._session.alive:
                self._session = await self._connect()
            await self._session.select(mailbox)
            present = await self._session.search_header("Message-ID", message_id)
            if not present:
                return None
            fetched = await self._session.fetch(uid_set(present), "(UID RFC822.SIZE)")
        except ImapError:  # no such mailbox yet, or no connection: the APPEND will tell
            return None
        same = [f.uid for f in fetched if f.size == len(content)]
        if not same:  # no message with that Message-ID, or only others (of another size) with it
            return None
        return Outcome.delivered(f"already in {mailbox} on {self.peer} as UID {same[0]}")

    async def file_copy(self, content: bytes) -> Outcome:
        # CRLF, as the upload: the server counts RFC822.SIZE so, and _present compares sizes
        content = crlf(content)
        mailbox = self.settings.sent_mailbox
        earlier = await self._present(content, mailbox)
        if earlier is not None:
            return earlier
        outcome = await self._append(content, mailbox, "\\Seen")
        if outcome.kind is OutcomeKind.DELIVERED:
            self._counters["sent_copies"] += 1
        return outcome
