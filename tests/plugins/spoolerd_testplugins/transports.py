"""Test transports with scripted behaviour: deliver, defer, fail, decline (NOT_ME), stall, crash.

They are real plugins (entry points in ``spoolerd.transports``), built by the registry from their own
settings, so the spooler under test loads them exactly as it loads SMTP or IMAP.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import anyio
from pydantic import BaseModel, ConfigDict

from spoolerd.errors import ConfigError
from spoolerd.message import InboundMessage, Message, Recipient, StateChange
from spoolerd.preprocess import PreprocessResult
from spoolerd.transport import Direction, Outcome, TransportContext


class ScriptedSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address_types: list[str] | None = ["SMTP"]
    accept_domains: list[str] | None = None  # others: NOT_ME
    temp_fail: list[str] = []  # deferred with 451 4.3.0 ...
    temp_fail_times: int = 1_000_000  # ... this many times, then delivered
    perm_fail: list[str] = []  # 550 5.1.1
    connection_down: bool = False  # every recipient deferred with no reply (destination down)
    retry_after: float | None = None
    crash: bool = False  # send() raises
    delay: float = 0.0  # seconds each send takes
    log_file: str | None = None  # a line "message-id address" per delivered recipient, fsynced
    copy_dir: str | None = None  # the content of each message with a delivered recipient, as copy_dir/ID


def _prepend(content: bytes, header: bytes) -> bytes:
    return header + b"\r\n" + content


class ScriptedTransport:
    Settings: ClassVar[type[BaseModel]] = ScriptedSettings

    def __init__(self, settings: ScriptedSettings, context: TransportContext) -> None:
        self.name = context.name
        self.settings = settings
        self.address_types = None if settings.address_types is None else frozenset(settings.address_types)
        self.calls: list[tuple[str, list[str]]] = []  # (message id, addresses) per send
        self.delivered: list[tuple[str, str, bytes]] = []  # (message id, address, content)
        self.gate: anyio.Event | None = None  # when set by a test, send waits for it
        self.entered = anyio.Event()  # set at the first send
        self.concurrent = self.max_concurrent = 0
        self._crowds: list[tuple[int, anyio.Event]] = []  # (sends at once, set when reached)
        self.started = self.stopped = False
        self._failures: dict[str, int] = {}

    async def start(self) -> None:
        self.started = True

    async def until_concurrent(self, count: int) -> None:
        """Return once ``count`` sends are under way at the same time."""
        if self.concurrent >= count:
            return
        reached = anyio.Event()
        self._crowds.append((count, reached))
        await reached.wait()

    async def stop(self) -> None:
        self.stopped = True

    def destination(self, recipient: Recipient) -> str:
        return recipient.address.rpartition("@")[2].lower()

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        self.calls.append((message.id, [r.address for r in recipients]))
        self.entered.set()
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        for count, reached in self._crowds:
            if self.concurrent >= count:
                reached.set()
        try:
            return await self._send(message, recipients)
        finally:
            self.concurrent -= 1

    async def _send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        accepted = self.settings.accept_domains
        mine = [r for r in recipients if accepted is None or r.address.rpartition("@")[2] in accepted]
        if self.gate is not None and mine:  # declining is instant; only real work waits
            await self.gate.wait()
        if self.settings.delay:
            await anyio.sleep(self.settings.delay)
        if self.settings.crash and mine:
            raise RuntimeError("scripted crash")
        outcomes = []
        for r in recipients:
            domain = r.address.rpartition("@")[2]
            if self.settings.accept_domains is not None and domain not in self.settings.accept_domains:
                outcomes.append(Outcome.not_me())
            elif self.settings.connection_down:
                outcomes.append(
                    Outcome.deferred("connection refused", None, "4.4.1", self.settings.retry_after)
                )
            elif r.address in self.settings.perm_fail:
                outcomes.append(Outcome.failed(f"<{r.address}>: no such user", 550, "5.1.1"))
            elif (
                r.address in self.settings.temp_fail
                and self._failures.get(r.address, 0) < self.settings.temp_fail_times
            ):
                self._failures[r.address] = self._failures.get(r.address, 0) + 1
                outcomes.append(
                    Outcome.deferred("mailbox busy, try later", 451, "4.3.0", self.settings.retry_after)
                )
            else:
                outcomes.append(Outcome.delivered("accepted"))
                self.delivered.append((message.id, r.address, message.content))
        if self.settings.copy_dir and any(o.kind == "delivered" for o in outcomes):
            await anyio.Path(self.settings.copy_dir, message.id).write_bytes(message.content)
        if self.settings.log_file:
            lines = "".join(
                f"{message.id} {r.address}\n"
                for r, o in zip(recipients, outcomes, strict=True)
                if o.kind == "delivered"
            )
            fd = os.open(self.settings.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, lines.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        return outcomes


class _NoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InboundSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str = "local"
    drop_dir: str | None = None  # flush(DOWNLOAD) takes every file here as one downloaded message


@dataclass
class _Inbound:
    store: str
    message: InboundMessage
    owner: InboundTransport

    path: str | None = None
    state: StateChange | None = None  # nothing to remember: the drop directory forgets what it gave

    async def acknowledge(self) -> None:
        self.owner.acknowledged.append(self.message.content)
        self.owner.acked.set()
        if self.path is not None:
            os.unlink(self.path)  # "mark it seen on the server": only after the local commit
        self.owner.outstanding -= 1
        if self.owner.outstanding == 0:
            self.owner.drained.set()


class InboundTransport:
    """Downloads what a test injects; records what the spooler acknowledged."""

    Settings: ClassVar[type[BaseModel]] = InboundSettings

    def __init__(self, settings: InboundSettings, context: TransportContext) -> None:
        self.name = context.name
        self.address_types: frozenset[str] | None = frozenset()
        self.downloads = True
        self.store = settings.store
        self.drop_dir = settings.drop_dir
        self.acknowledged: list[bytes] = []
        self.acked = anyio.Event()
        self.outstanding = 0
        self.drained = anyio.Event()
        self.receive_calls = 0
        self._send, self._receive = anyio.create_memory_object_stream[tuple[InboundMessage, str | None]](100)

    def check(self) -> None:
        """What a third-party transport's check looks like: its drop directory must exist."""
        if self.drop_dir is not None and not os.path.isdir(self.drop_dir):
            raise ConfigError([f"drop_dir: {self.drop_dir} is not a directory"])

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._send.close()
        self._receive.close()

    def destination(self, recipient: Recipient) -> str:
        return "-"

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        return [Outcome.not_me()] * len(recipients)

    def inject(self, message: InboundMessage, path: str | None = None) -> None:
        self.outstanding += 1
        self.drained = anyio.Event() if self.drained.is_set() else self.drained
        self._send.send_nowait((message, path))

    async def flush(self, direction: Direction) -> None:
        """Download now: hand over every file in the drop directory and return once the spooler has
        committed and acknowledged them all (FlushQueues is synchronous)."""
        if direction is not Direction.DOWNLOAD or self.drop_dir is None:
            return
        for name in sorted(os.listdir(self.drop_dir)):
            path = os.path.join(self.drop_dir, name)
            self.inject(InboundMessage(await anyio.Path(path).read_bytes()), path)
        if self.outstanding:
            await self.drained.wait()

    def end_receive(self) -> None:
        """Say there is nothing more to download: ``receive`` returns once it has handed over the rest."""
        self._send.close()

    async def receive(self) -> AsyncIterator[_Inbound]:
        self.receive_calls += 1
        async for message, path in self._receive:
            yield _Inbound(self.store, message, self, path)


class _Tag:
    def __init__(self, name: str, address_types: frozenset[str] | None = None) -> None:
        self.name = name
        if address_types is not None:
            self.address_types = address_types

    async def __call__(self, message: Message, now: float) -> PreprocessResult:
        return PreprocessResult(content=_prepend(message.content, f"X-Preprocessed-By: {self.name}".encode()))


class TaggerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address_types: list[str] = []  # empty: a preprocessor-only transport
    preprocess_types: list[str] | None = None  # the preprocessor's own address types, if any


class _NoConnection:
    """What a transport with nothing to connect to answers about itself."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def destination(self, recipient: Recipient) -> str:
        return "-"


class TaggerTransport(_NoConnection):
    """Registers a preprocessor; delivers whatever is routed to it."""

    Settings: ClassVar[type[BaseModel]] = TaggerSettings

    def __init__(self, settings: TaggerSettings, context: TransportContext) -> None:
        self.name = context.name
        self.address_types: frozenset[str] | None = frozenset(settings.address_types)
        types = settings.preprocess_types
        self._tag = _Tag(f"transport:{self.name}", None if types is None else frozenset(types))

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        return [Outcome.delivered("tagged")] * len(recipients)

    def preprocessors(self) -> list[_Tag]:
        return [self._tag]


class StampPreprocessor(_Tag):
    """Entry point ``test-stamp`` in ``spoolerd.preprocessors``."""

    def __init__(self) -> None:
        super().__init__("entry-point:test-stamp")


class HalfSentCopies(TaggerTransport):
    """Says it files sent copies (``sent_copies = True``) but has no ``file_sent``: half an ability, which
    the daemon refuses at start (entry point ``test-halfsent``)."""

    Settings: ClassVar[type[BaseModel]] = TaggerSettings

    def __init__(self, settings: TaggerSettings, context: TransportContext) -> None:
        super().__init__(settings, context)
        self.sent_copies = True


class PullSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str = "local"
    drop_dir: str


class PullTransport(_NoConnection):
    """Downloads without a ``flush`` of its own (entry point ``test-pull``): each ``receive()`` hands over
    every file in the drop directory and returns, so the spooler flushes it (seed 000's second procedure)."""

    Settings: ClassVar[type[BaseModel]] = PullSettings

    def __init__(self, settings: PullSettings, context: TransportContext) -> None:
        self.name = context.name
        self.address_types: frozenset[str] | None = frozenset()
        self.downloads = True
        self.settings = settings

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        return [Outcome.not_me()] * len(recipients)

    async def receive(self) -> AsyncIterator[_Pulled]:
        for name in sorted(os.listdir(self.settings.drop_dir)):
            path = os.path.join(self.settings.drop_dir, name)
            yield _Pulled(self.settings.store, InboundMessage(await anyio.Path(path).read_bytes()), path)


@dataclass
class _Pulled:
    store: str
    message: InboundMessage
    path: str
    state: StateChange | None = None

    async def acknowledge(self) -> None:
        os.unlink(self.path)  # "mark it seen on the server": only after the local commit
