"""The IMAP transport (entry point ``imap``): one account, downloading into a local store and uploading by
APPEND.

Download runs as one loop per account (``receive``, driven by the spooler): connect and log in, make a
pass over the mailboxes (``download.Downloader``), then wait on IDLE for new mail (re-issued every
``idle_renew`` seconds), or on a timer without IDLE, and start again. ``flush(DOWNLOAD)`` cuts any wait
short and returns once a pass that began after it has committed and acknowledged everything. A network
error reconnects after a backoff doubling from ``reconnect_initial`` to ``reconnect_max``; a refused
login waits ``login_retry`` (or the next flush) and shows in the status row, so a wrong password never
becomes a reconnect loop.

Upload uses its own connection, kept open between messages and replaced once when found dead
(``upload.Uploader``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any, ClassVar

import structlog
from pydantic import BaseModel

from spoolerd.errors import ConfigError
from spoolerd.message import Message, Recipient
from spoolerd.retry import Backoff, Schedule
from spoolerd.store import MessageStore
from spoolerd.transport import Direction, Outcome, PartChange, TransportContext
from transports.common.check import checked_tls
from transports.common.credentials import Credentials

from . import adapter
from .download import Downloaded, Downloader
from .sent import SentCopies
from .session import ImapError, LoginRefused, Session, open_session
from .settings import ImapSettings, TlsMode
from .upload import Uploader

__all__ = ["ImapTransport"]

log = structlog.get_logger("spoolerd.transports.imap")

_QUICK_FAILURE = 10.0  # seconds: waiting for mail that fails sooner backs off before reconnecting


class ImapTransport:
    Settings: ClassVar[type[BaseModel]] = ImapSettings

    def __init__(self, settings: ImapSettings, context: TransportContext) -> None:
        self.name = context.name
        self.settings = settings
        self.peer = settings.peer
        types = set(settings.address_types) | ({"SMTP"} if settings.addresses else set())
        self.address_types: frozenset[str] | None = frozenset(types)
        self.sent_copies = settings.sent_copy
        self.downloads = bool(settings.mailboxes)
        self._exact = {a.casefold() for a in settings.addresses if not a.startswith("@")}
        self._domains = {a[1:].casefold() for a in settings.addresses if a.startswith("@")}
        self._credentials = Credentials(settings)
        self._context: ssl.SSLContext | None = None
        self._downloader: Downloader | None = None
        if settings.mailboxes:
            store_name = settings.store or context.default_store
            store = context.stores.get(store_name or "")
            if store is None:
                raise ConfigError([f"store: no store named {store_name!r} to download into"])
            self._downloader = Downloader(self.name, settings, store_name or "", store, context.clock)
        # the download loop
        self._wake = asyncio.Event()
        self._started = 0  # passes begun
        self._ended = 0  # passes over
        self._pass_over = asyncio.Event()
        self._errors: dict[int, str] = {}  # pass number -> why it failed (recent passes only)
        self._download: Session | None = None
        self._active = False
        self._flushing = 0
        self._stopped = False
        self._retry_at: float | None = None  # loop time of the next try, while waiting after a failure
        self._reconnect = Schedule(settings.reconnect_initial, settings.reconnect_max)
        self._idle_failures = 0  # waits for mail that failed at once, in a row
        self._failure: str | None = None
        self._refusal: str | None = None  # the last pass's acknowledgement failure
        self._reported: str | None = None  # the failure last told to the spooler (``watch``)
        self._changed: Callable[[PartChange], None] = lambda change: None
        self._notices: list[str] = []
        self.counters: dict[str, int] = {
            "received": 0,
            "downloaded_again": 0,
            "uploaded": 0,
            "sent_copies": 0,
        }
        # upload
        self._uploader = Uploader(settings, self._connect, self.counters)
        self._sent: SentCopies | None = None
        self._payer: asyncio.Task[None] | None = None
        if settings.sent_copy:
            self._sent = SentCopies(
                self.name, context.stores, context.default_store, self._uploader.file_copy, self._reconnect
            )

    # ------------------------------------------------------------------ lifecycle

    def check(self) -> None:
        """Secrets resolve and TLS files load (``spoolerd check-config``, ``run`` and a reload call it)."""
        tls = None if self.settings.tls is TlsMode.NONE else self.settings
        self._context = checked_tls(self._credentials, tls)

    async def start(self) -> None:
        adapter.check()  # an aioimaplib outside the tested range fails here, naming what changed
        self.check()
        if self._sent is not None:  # copies an earlier life of the daemon left owed are paid now
            self._payer = asyncio.create_task(self._sent.run())

    async def stop(self) -> None:
        self._stopped = True
        self._pass_over.set()  # a flush still waiting is answered
        if self._download is not None:
            self._download.close()
        self._download = None
        self._uploader.close()
        if self._payer is not None:
            self._payer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._payer
            self._payer = None

    async def _connect(self) -> Session:
        return await open_session(self.settings, self._credentials, self._context)

    # ------------------------------------------------------------------ download

    async def receive(self) -> AsyncIterator[Downloaded]:
        downloader = self._downloader
        if downloader is None:  # upload only (``downloads`` is False, so the spooler never asks)
            return
        backoff = Backoff(self._reconnect)
        while True:
            self._started += 1
            number = self._started
            self._wake.clear()
            error: str | None = None
            wait = 0.0
            try:
                if self._download is None or not self._download.alive:
                    self._download = await self._connect()
                self._active = True
                async for item in downloader.run(self._download):
                    yield item
                report = downloader.report
                self.counters["received"] += report.received
                self.counters["downloaded_again"] += report.downloaded_again
                for notice in report.notices:
                    log.warning(notice.event, transport=self.name, notice=notice.text)
                self._notices = (self._notices + [n.text for n in report.notices])[-10:]
                self._acknowledgements(report.refusal)
                backoff.reset()
            except LoginRefused as exc:
                error, wait = str(exc), self.settings.login_retry
            except (ImapError, ValueError) as exc:
                error, wait = str(exc), backoff.failed()
            except Exception as exc:  # the store failed (e.g. its disk): the pass is over, not the loop
                log.exception("download pass failed", transport=self.name)
                error, wait = f"{type(exc).__name__}: {exc}", backoff.failed()
            finally:
                self._active = False
            self._end_pass(number, error)
            if error is not None:
                if self._download is not None:
                    self._download.close()
                    self._download = None
                log.warning("download failed", transport=self.name, error=error, retry_in=wait)
                await self._sleep(wait)
                continue
            await self._idle(downloader)

    def _acknowledgements(self, refusal: str | None) -> None:
        """A server refusing to mark, delete or move what was downloaded (a missing ``move_to``, say) is
        a failure in the status row, logged when it begins and when it ends, not every pass."""
        if refusal is not None and self._refusal is None:
            log.warning("acknowledgements refused", transport=self.name, error=refusal)
        elif refusal is None and self._refusal is not None:
            log.info("acknowledgements accepted again", transport=self.name)
        self._refusal = refusal
        self._report()

    async def _idle(self, downloader: Downloader) -> None:
        """Wait for new mail, a flush, or the time to look again."""
        session = self._download
        assert session is not None
        mailboxes = self.settings.mailboxes
        seconds = self.settings.idle_renew if session.idles else self.settings.poll_interval
        if len(mailboxes) > 1:
            seconds = min(seconds, self.settings.poll_interval)  # IDLE watches the first mailbox only
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            # SELECT again: mail that came during the pass was announced while a command was running,
            # and aioimaplib drops such announcements; UIDNEXT tells (once IDLE runs, nothing is lost)
            info = await session.select(mailboxes[0])
            if info.uidnext is not None and info.uidnext > downloader.uidnext.get(mailboxes[0], 0):
                return
            if await session.wait_for_mail(seconds, self._wake) == "refused":
                # the connection is fine, IDLE is not: poll on it rather than reconnect in a loop
                log.warning(
                    "IDLE refused; polling instead", transport=self.name, every=self.settings.poll_interval
                )
                await session.wait_for_mail(min(seconds, self.settings.poll_interval), self._wake)
            self._idle_failures = 0
        except ImapError as exc:
            session.close()
            self._download = None
            if loop.time() - began > _QUICK_FAILURE:  # a connection that served a while: at once
                log.info("connection lost while waiting for mail", transport=self.name, error=str(exc))
                self._idle_failures = 0
                return
            # failing as soon as it waits, again and again (a server that refuses IDLE, say): after the
            # first time, back off rather than loop on connect, log in, pass, fail
            self._idle_failures += 1
            if self._idle_failures == 1:
                return
            wait = self._reconnect.delay(self._idle_failures - 1)
            log.warning("waiting for mail failed", transport=self.name, error=str(exc), retry_in=wait)
            self._failure = str(exc)
            self._report()
            await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (shown as retry_in in the status row), or until a flush."""
        loop = asyncio.get_running_loop()
        self._retry_at = loop.time() + seconds
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)
        finally:
            self._retry_at = None

    def _end_pass(self, number: int, error: str | None) -> None:
        self._ended = number
        self._failure = error
        self._report()
        if error is not None:
            self._errors[number] = error
        for old in [n for n in self._errors if n < number - 100]:
            del self._errors[old]
        self._pass_over.set()
        self._pass_over = asyncio.Event()

    async def flush(self, direction: Direction) -> None:
        """DOWNLOAD: a pass that starts now; returns when it is over, raising what made it fail."""
        if direction is not Direction.DOWNLOAD or self._downloader is None:
            return
        target = self._started + 1
        self._flushing += 1
        self._wake.set()
        try:
            while self._ended < target and not self._stopped:
                await self._pass_over.wait()
        finally:
            self._flushing -= 1
        if self._ended < target:
            raise ImapError(f"{self.name}: stopped before the download was done")
        failed = self._errors.get(target)
        if failed is not None:
            raise ImapError(f"download by {self.name} failed: {failed}")

    # ------------------------------------------------------------------ upload

    def destination(self, recipient: Recipient) -> str:
        return f"imap:{self.peer}"

    def _uploads(self, recipient: Recipient) -> bool:
        if recipient.address_type in self.settings.address_types:
            return True
        if recipient.address_type != "SMTP" or not (self._exact or self._domains):
            return False
        address = recipient.address.casefold()
        return address in self._exact or address.rpartition("@")[2] in self._domains

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        outcomes = [Outcome.not_me()] * len(recipients)
        mine = [i for i, r in enumerate(recipients) if self._uploads(r)]
        if mine:
            outcome = await self._uploader.upload(message)
            for i in mine:
                outcomes[i] = outcome
        return outcomes

    async def owe_sent(self, store: MessageStore, message: Message, delivered_by: Collection[str]) -> None:
        """Told before the message is finished: the copy owed is committed in ``store`` (``sent``), so a
        crash before it is filed loses nothing."""
        if self._sent is not None and set(delivered_by) - {self.name}:
            await self._sent.owe(store, message)

    async def file_sent(self, message: Message, delivered_by: Collection[str]) -> None:
        """``sent_copy``: a copy of mail other transports delivered goes to the server's Sent mailbox,
        once: a copy with the same Message-ID and size already there is not appended again."""
        if self._sent is not None and set(delivered_by) - {self.name}:
            await self._sent.file_now(message)

    # ------------------------------------------------------------------ status

    @property
    def _failing(self) -> str | None:
        """Why its status row is failing (the download loop's failure, or refused acknowledgements)."""
        return self._failure or self._refusal

    def watch(self, changed: Callable[[PartChange], None]) -> None:
        """Where to tell the spooler that its row fails, or works again (not asked: told)."""
        self._changed = changed

    def _report(self) -> None:
        if self._failing != self._reported:
            self._reported = self._failing
            self._changed(PartChange(None, self._failing))

    def status(self) -> dict[str, Any]:
        """This account's part of the status row."""
        flags = []
        if self._active:
            flags.append("inbound_active")
        if self._flushing:
            flags.append("flushing")
        failure = self._failing
        if failure is not None:
            flags.append("failure")
        return {
            "status": flags,
            "last_error": failure,
            "counters": dict(self.counters),
            "server": self.peer,
            "mailboxes": list(self.settings.mailboxes),
            "notices": list(self._notices),
            "sent_copies_owed": None if self._sent is None else self._sent.owed,
            "retry_in": None
            if self._retry_at is None
            else round(self._retry_at - asyncio.get_running_loop().time(), 1),
        }
