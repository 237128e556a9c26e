"""Optional transport abilities: detected once when a transport is built, a half-implemented one refused at
start naming the plugin and what it lacks, and the core asking the slot, never the plugin."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from spoolerd.abilities import detect
from spoolerd.cli import EX_CONFIG
from spoolerd.config import parse_config
from spoolerd.daemon import build, stop_transports
from spoolerd.errors import ConfigError, PluginError
from spoolerd.message import Message, Recipient
from spoolerd.plugins import PREPROCESSORS, STORES, TRANSPORTS, PluginRegistry
from spoolerd.store import MessageStore
from spoolerd.transport import Direction, Inbound, Outcome, TransportContext


class _NoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Plain:
    """Only the transport contract: no optional ability at all."""

    Settings: ClassVar[type[BaseModel]] = _NoSettings

    def __init__(self, settings: Any = None, context: TransportContext | None = None) -> None:
        self.name = "plain" if context is None else context.name
        self.address_types: frozenset[str] | None = frozenset({"SMTP"})

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        return [Outcome.delivered()] * len(recipients)

    def destination(self, recipient: Recipient) -> str:
        return "-"


class SentFlagOnly(Plain):
    sent_copies = True  # and no file_sent


class FileSentOnly(Plain):
    async def file_sent(self, message: Message, delivered_by: Collection[str]) -> None:
        return None  # and no sent_copies flag


class OweWithoutFile(Plain):
    sent_copies = True

    async def owe_sent(self, store: MessageStore, message: Message, delivered_by: Collection[str]) -> None:
        return None


class SyncFileSent(Plain):
    sent_copies = True

    def file_sent(self, message: Message, delivered_by: Collection[str]) -> None:
        return None


class ReceiveOnly(Plain):
    async def receive(self) -> AsyncIterator[Inbound]:
        for _ in ():
            yield _


class DownloadsFlagOnly(Plain):
    downloads = True


class FlushNotCallable(Plain):
    flush = "now"


class SyncFlush(Plain):
    def flush(self, direction: Direction) -> None:
        return None


class StatusNotCallable(Plain):
    status: Mapping[str, Any] = {"status": []}


class WatchNotCallable(Plain):
    watch = None


class PreprocessorsNotCallable(Plain):
    preprocessors: ClassVar[list[str]] = ["headers"]


class NamelessPreprocessor(Plain):
    def preprocessors(self) -> list[Any]:
        return [lambda message, now: None]


class ZeroDestinationLimit(Plain):
    destination_concurrency = 0


class RateGateNotCallable(Plain):
    use_rate_gate = True


class BadAddressTypes(Plain):
    def __init__(self, settings: Any = None, context: TransportContext | None = None) -> None:
        super().__init__(settings, context)
        self.address_types = ["SMTP"]  # type: ignore[assignment]


HALF = [
    (SentFlagOnly, "sent_copies is set but file_sent() is missing"),
    (FileSentOnly, "file_sent() without the sent_copies flag"),
    (OweWithoutFile, "file_sent() is missing"),
    (SyncFileSent, "file_sent must be an async method"),
    (ReceiveOnly, "receive() without the downloads flag"),
    (DownloadsFlagOnly, "downloads is set but receive() is missing"),
    (FlushNotCallable, "flush must be an async method"),
    (SyncFlush, "flush must be an async method"),
    (StatusNotCallable, "status must be a method"),
    (WatchNotCallable, "watch must be a method (Watched)"),
    (PreprocessorsNotCallable, "preprocessors must be a method"),
    (NamelessPreprocessor, "not a preprocessor"),
    (ZeroDestinationLimit, "destination_concurrency must be None or a positive int"),
    (RateGateNotCallable, "use_rate_gate must be a method"),
    (BadAddressTypes, "address_types must be a frozenset of str or None"),
]


@pytest.mark.parametrize(("cls", "problem"), HALF, ids=[cls.__name__ for cls, _ in HALF])
def test_a_half_implemented_ability_is_refused_naming_plugin_and_member(
    cls: type[Plain], problem: str
) -> None:
    with pytest.raises(PluginError) as err:
        detect(cls(), "entry point spoolerd.transports:x = somewhere:Thing")
    assert str(err.value).startswith("entry point spoolerd.transports:x = somewhere:Thing: ")
    assert problem in str(err.value)


def test_a_plain_transport_has_no_ability() -> None:
    found = detect(Plain(), "plain")
    assert found.check is None and found.downloader is None and found.flush is None
    assert found.preprocessors == () and found.status is None and found.sent_copier is None
    assert found.destination_concurrency is None and found.use_rate_gate is None


def _registry(**classes: str) -> PluginRegistry:
    entries = [
        EntryPoint("sqlite", "stores.sqlite:SqliteStore", STORES),
        EntryPoint("headers", "spoolerd.preprocess:HeadersPreprocessor", PREPROCESSORS),
    ]
    entries += [EntryPoint(name, value, TRANSPORTS) for name, value in classes.items()]
    return PluginRegistry(entries)


def test_the_daemon_refuses_to_build_with_half_an_ability(tmp_path: Path) -> None:
    registry = _registry(half=f"{__name__}:SentFlagOnly", fine=f"{__name__}:Plain")
    config = parse_config(
        {
            "spooler": {"state_dir": str(tmp_path)},
            "transports": {"fine": {"provider": "fine"}, "copies": {"provider": "half"}},
        }
    )
    with pytest.raises(ConfigError) as err:
        build(config, registry)
    (problem,) = err.value.problems
    assert problem == (
        f"transports.copies.provider: entry point spoolerd.transports:half = {__name__}:SentFlagOnly:"
        " sent_copies is set but file_sent() is missing (FilingSentCopies)"
    )


async def test_the_shipped_and_test_transports_declare_whole_abilities(tmp_path: Path) -> None:
    """Every installed transport plugin passes detection, and the slot answers for it."""
    config = parse_config(
        {
            "spooler": {"state_dir": str(tmp_path)},
            "transports": {
                "local": {"provider": "loopback"},
                "relay": {
                    "provider": "smtp",
                    "host": "127.0.0.1",
                    "tls": "none",
                    "destination_concurrency": 3,
                },
                "mail": {
                    "provider": "imap",
                    "host": "127.0.0.1",
                    "tls": "none",
                    "username": "u",
                    "password_env": "HOME",
                    "sent_copy": True,
                    "mailboxes": [],
                },
                "feed": {"provider": "test-inbound"},
                "tagger": {"provider": "test-tagger", "preprocess_types": ["X400"]},
            },
        }
    )
    daemon = build(config, PluginRegistry())
    slots = {slot.name: slot for slot in daemon.spooler.dispatcher.transports}
    assert (
        not slots["local"].downloads and slots["local"].flush is None and slots["local"].sent_copier is None
    )
    assert slots["relay"].destination_concurrency == 3 and slots["relay"].abilities.check is not None
    mail = slots["mail"]
    assert mail.flush is not None and mail.sent_copier is not None and mail.sent_copier.owe_sent is not None
    assert not mail.downloads  # no mailboxes: the flag says so, and the spooler runs no download loop
    assert "counters" in mail.own_status()
    assert slots["feed"].downloads and slots["feed"].flush is not None and slots["feed"].own_status() == {}
    (pre,) = slots["tagger"].preprocessors
    assert pre.own_types and pre.address_types == frozenset({"X400"})
    await stop_transports(daemon.transports)


async def test_spoolerd_run_refuses_an_installed_half_implemented_plugin(tmp_path: Path) -> None:
    """The start path end to end: ``test-halfsent`` (tests/plugins) is found through its entry point,
    refused with EX_CONFIG and a line naming it and the missing method; nothing is created."""
    cfg = tmp_path / "spoolerd.toml"
    state = tmp_path / "state"
    cfg.write_text(f'[spooler]\nstate_dir = "{state}"\n[transports.copies]\nprovider = "test-halfsent"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spoolerd.cli", "run", "--config", str(cfg), stderr=subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == EX_CONFIG, err
    assert (
        b"transports.copies.provider: entry point spoolerd.transports:test-halfsent ="
        b" spoolerd_testplugins.transports:HalfSentCopies: sent_copies is set but file_sent() is missing"
    ) in err
    assert not state.exists()
