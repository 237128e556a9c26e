"""Download: what one pass over an account's mailboxes takes, and what it remembers.

The account's memory lives in the local store (``transport_state``), per mailbox:

    mbox/<mailbox, %-encoded>/validity    UIDVALIDITY the UIDs below belong to
    mbox/<mailbox, %-encoded>/uid/<UID>   b"p <fingerprint>" taken, not yet acknowledged on the server
                                          b"c <fingerprint>" copied to move_to, not yet removed (a
                                                             server without MOVE)
                                          b"a <fingerprint>" taken and acknowledged

A message's key is committed in the same transaction as the message itself (``deliver(state=…)``), so a
message is never kept without its UID or the reverse. Only then is it acknowledged on the server (\\Seen,
deleted or moved, by ``after_download``), and for \\Seen the key is marked acknowledged afterwards. A kill
between the two leaves a "p" key: the next pass acknowledges it again and downloads nothing twice. Keys
of UIDs the server no longer has are forgotten, so the memory stays as large as the mailbox.

A UIDVALIDITY change voids every UID: the messages are matched again by a fingerprint (size and a digest
of the header section) fetched from the server, the ones already taken are remembered under their new
UIDs, and only the rest is downloaded; messages that cannot be told apart are downloaded again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from spoolerd import maillog
from spoolerd.envelope import header_end, header_sender, header_subject
from spoolerd.message import InboundMessage, StateChange
from spoolerd.message_class import class_from_content
from spoolerd.store import MessageStore

from .session import CommandFailed, Session
from .settings import AfterDownload, ImapSettings
from .wire import Fetched, fingerprint, one_line, uid_set

__all__ = ["Downloaded", "Downloader", "MailboxMemory"]

_REVALIDATE_BATCH = 200
_PENDING = b"p"
_COPIED = b"c"
_DONE = b"a"


@dataclass(slots=True)
class Downloaded:
    """One message for the spooler to commit (with ``state``) before it calls ``acknowledge``."""

    store: str
    message: InboundMessage
    state: StateChange
    uid: int
    _taken: Callable[[int], None]

    async def acknowledge(self) -> None:
        self._taken(self.uid)  # the server is told after the batch, in one command


@dataclass(slots=True)
class MailboxMemory:
    """What the store remembers of one mailbox."""

    prefix: str
    validity: int | None = None
    taken: dict[int, tuple[bool, bytes]] = field(default_factory=dict)  # uid -> (acknowledged, fingerprint)
    copied: set[int] = field(default_factory=set)  # copied to move_to already: never copied again

    @classmethod
    def key_prefix(cls, mailbox: str) -> str:
        return f"mbox/{quote(mailbox, safe='')}/"

    @classmethod
    def parse(cls, mailbox: str, state: Mapping[str, bytes]) -> MailboxMemory:
        prefix = cls.key_prefix(mailbox)
        memory = cls(prefix)
        for key, value in state.items():
            rest = key[len(prefix) :]
            if rest == "validity":
                memory.validity = int(value)
            elif rest.startswith("uid/"):
                flag, _, fp = value.partition(b" ")
                uid = int(rest[4:])
                memory.taken[uid] = (flag == _DONE, fp)
                if flag == _COPIED:
                    memory.copied.add(uid)
        return memory

    @property
    def validity_key(self) -> str:
        return self.prefix + "validity"

    def uid_key(self, uid: int) -> str:
        return f"{self.prefix}uid/{uid}"

    def value(self, acknowledged: bool, fp: bytes) -> bytes:
        return (_DONE if acknowledged else _PENDING) + b" " + fp


@dataclass(frozen=True, slots=True)
class Notice:
    """Something an operator should know about a pass: ``event`` names its log line."""

    event: str
    text: str


@dataclass(slots=True)
class PassReport:
    received: int = 0
    notices: list[Notice] = field(default_factory=list)
    downloaded_again: int = 0  # renumbered messages not told apart for sure: taken again, never lost
    unacknowledged: int = 0  # messages the server refused to mark, delete or move this pass
    refused: str | None = None  # the server's last refusal of an acknowledgement

    @property
    def refusal(self) -> str | None:
        """The pass's acknowledgement failure, for the status row, if there was one."""
        if self.refused is None:
            return None
        return f"{self.unacknowledged} messages stay on the server as they were: {self.refused}"


class Downloader:
    """Runs download passes for one account into one store."""

    def __init__(
        self,
        name: str,
        settings: ImapSettings,
        store_name: str,
        store: MessageStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.settings = settings
        self.store_name = store_name
        self.store = store
        self.clock = clock
        self.report = PassReport()
        self.uidnext: dict[str, int] = {}  # per mailbox, at the last pass's SELECT

    async def _memory(self, mailbox: str) -> MailboxMemory:
        prefix = MailboxMemory.key_prefix(mailbox)
        return MailboxMemory.parse(mailbox, await self.store.transport_state(self.name, prefix))

    async def _remember(self, changes: Mapping[str, bytes | None]) -> None:
        if changes:
            await self.store.set_transport_state(StateChange(self.name, dict(changes)))

    async def run(self, session: Session) -> AsyncIterator[Downloaded]:
        """One pass over every mailbox: new messages are yielded in UID order and acknowledged on the
        server a batch at a time, once the spooler has committed them."""
        self.report = PassReport()
        for mailbox in self.settings.mailboxes:
            async for item in self._mailbox(session, mailbox):
                yield item

    async def _mailbox(self, session: Session, mailbox: str) -> AsyncIterator[Downloaded]:
        info = await session.select(mailbox)
        self.uidnext[mailbox] = info.uidnext or 0
        if info.uidvalidity is None:
            raise ValueError(f"{session.peer}: {mailbox} has no UIDVALIDITY")
        memory = await self._memory(mailbox)
        if memory.validity is not None and memory.validity != info.uidvalidity:
            memory = await self._revalidate(session, mailbox, memory, info.uidvalidity)  # stores it
        validity_stored = memory.validity is not None
        on_server = set(await session.uids()) if info.exists else set()
        await self._remember({memory.uid_key(uid): None for uid in memory.taken if uid not in on_server})
        unacknowledged = [u for u, (done, _) in memory.taken.items() if not done and u in on_server]
        if unacknowledged:  # taken before a crash or a lost connection, never acknowledged
            await self._acknowledge(session, memory, unacknowledged)
        new = sorted(on_server - memory.taken.keys())
        keep = self.settings.after_download is AfterDownload.KEEP
        batch = self.settings.fetch_batch
        for start in range(0, len(new), batch):
            wanted = set(new[start : start + batch])
            fetched = await self._fetch(session, mailbox, wanted)
            taken: list[int] = []
            yielded: list[int] = []
            for item in sorted(fetched, key=lambda f: f.uid):
                if item.uid not in wanted or item.literal is None:
                    continue  # an unsolicited FETCH (flags changed by another client)
                wanted.discard(item.uid)
                fp = fingerprint(len(item.literal), item.literal)
                memory.taken[item.uid] = (keep, fp)
                yielded.append(item.uid)
                changes: dict[str, bytes | None] = {memory.uid_key(item.uid): memory.value(keep, fp)}
                if not validity_stored:  # with the first UID ever taken here, in the same transaction
                    changes[memory.validity_key] = str(info.uidvalidity).encode()
                yield Downloaded(
                    self.store_name,
                    self._inbound(item.literal),
                    StateChange(self.name, changes),
                    item.uid,
                    taken.append,
                )
            for uid in set(yielded) - set(taken):
                memory.taken.pop(uid, None)  # not committed: offered again next pass
            self.report.received += len(taken)
            if taken:
                maillog.downloaded(
                    transport=self.name,
                    account=self.settings.username or "",
                    server=session.peer,
                    mailbox=mailbox,
                    first_uid=min(taken),
                    last_uid=max(taken),
                    count=len(taken),
                    store=self.store_name,
                )
                await self._acknowledge(session, memory, taken)

    def _inbound(self, content: bytes) -> InboundMessage:
        """The message with its class, sender and subject, read from the header section alone (the
        spooler would parse the whole message, body and all, for what it is not given)."""
        head = content[: header_end(content)]
        return InboundMessage(
            content,
            message_class=class_from_content(content, self.settings.message_class),
            sender=one_line(header_sender(head)),
            subject=one_line(header_subject(head))[:255],
            received_at=self.clock(),
        )

    async def _fetch(self, session: Session, mailbox: str, uids: set[int]) -> list[Fetched]:
        """A batch in one command; if the server refuses it, one by one, so that one message it cannot
        give (a broken file, say) does not hold back the others."""
        items = "(UID RFC822.SIZE BODY.PEEK[])"
        try:
            return await session.fetch(uid_set(uids), items)
        except CommandFailed:
            pass
        fetched: list[Fetched] = []
        for uid in sorted(uids):
            try:
                fetched += await session.fetch(str(uid), items)
            except CommandFailed as exc:
                self.report.notices.append(
                    Notice("message not fetched", f"{mailbox}: UID {uid} could not be fetched: {exc}")
                )
        return fetched

    async def _acknowledge(self, session: Session, memory: MailboxMemory, uids: list[int]) -> None:
        """Tell the server, by ``after_download``; then mark the keys (or forget them, once gone). A
        refusal (a read-only mailbox, a missing move_to) is the pass's failure in the status row, and the
        keys stay unacknowledged, to be tried again next pass: new mail keeps arriving meanwhile."""
        policy = self.settings.after_download
        if policy is AfterDownload.KEEP:
            return
        try:
            await self._tell_server(session, memory, uids, policy)
        except CommandFailed as exc:
            self.report.unacknowledged += len(uids)
            self.report.refused = str(exc)

    async def _tell_server(
        self, session: Session, memory: MailboxMemory, uids: list[int], policy: AfterDownload
    ) -> None:
        uids_text = uid_set(uids)
        if policy is AfterDownload.SEEN:
            await session.add_flags(uids_text, "\\Seen")
            await self._remember({memory.uid_key(u): memory.value(True, memory.taken[u][1]) for u in uids})
            for u in uids:
                memory.taken[u] = (True, memory.taken[u][1])
            return
        if policy is AfterDownload.DELETE:
            await session.add_flags(uids_text, "\\Deleted")
            await session.expunge(uids_text)
        else:
            await self._move(session, memory, uids)
        await self._remember({memory.uid_key(u): None for u in uids})  # gone from the server
        for u in uids:
            memory.taken.pop(u, None)
            memory.copied.discard(u)

    async def _move(self, session: Session, memory: MailboxMemory, uids: list[int]) -> None:
        """MOVE (RFC 6851) in one step; without it COPY, remembered at once so that a failure after it
        never copies again, then \\Deleted and EXPUNGE."""
        target = self.settings.move_to
        assert target is not None
        if session.has("MOVE") and not memory.copied.intersection(uids):
            await session.move(uid_set(uids), target)
            return
        to_copy = [u for u in uids if u not in memory.copied]
        if to_copy:
            await session.copy(uid_set(to_copy), target)
            await self._remember({memory.uid_key(u): _COPIED + b" " + memory.taken[u][1] for u in to_copy})
            memory.copied.update(to_copy)
        await session.add_flags(uid_set(uids), "\\Deleted")
        await session.expunge(uid_set(uids))

    async def _revalidate(
        self, session: Session, mailbox: str, memory: MailboxMemory, validity: int
    ) -> MailboxMemory:
        """The mailbox's UIDs were renumbered: recognise what was taken by fingerprint (size and header
        digest). A guess is never taken: when the server holds more messages with one fingerprint than
        were taken with it, which of them were taken cannot be told, so all of them are downloaded again
        (a duplicate rather than a loss), and the notice says how many."""
        known = Counter(fp for _, fp in memory.taken.values())
        fetched: list[Fetched] = []
        uids = await session.uids()
        for start in range(0, len(uids), _REVALIDATE_BATCH):  # aioimaplib copes badly with huge answers
            chunk = uid_set(uids[start : start + _REVALIDATE_BATCH])
            fetched += await session.fetch(chunk, "(UID RFC822.SIZE BODY.PEEK[HEADER])")
        on_server: dict[bytes, list[int]] = {}
        for item in sorted(fetched, key=lambda f: f.uid):
            if item.size is not None and item.literal is not None:
                on_server.setdefault(fingerprint(item.size, item.literal), []).append(item.uid)
        fresh = MailboxMemory(memory.prefix, validity)
        changes: dict[str, bytes | None] = {memory.uid_key(uid): None for uid in memory.taken}
        changes[fresh.validity_key] = str(validity).encode()
        keep = self.settings.after_download is AfterDownload.KEEP
        again = 0
        for fp, alike in on_server.items():
            if not known[fp]:
                continue  # new
            if len(alike) > known[fp]:
                again += len(alike)  # ambiguous: which were taken cannot be told
                continue
            for uid in alike:
                fresh.taken[uid] = (keep, fp)  # not kept: acknowledged again below, harmlessly
                changes[fresh.uid_key(uid)] = fresh.value(keep, fp)
        await self._remember(changes)
        total = sum(len(alike) for alike in on_server.values())
        text = (
            f"{mailbox}: UIDVALIDITY changed from {memory.validity} to {validity}; "
            f"{len(fresh.taken)} of {total} messages were already downloaded, the rest are new"
        )
        if again:
            text += f"; {again} alike in size and header could not be told apart and are downloaded again"
        self.report.notices.append(Notice("mailbox renumbered", text))
        self.report.downloaded_again += again
        return fresh
