"""The aioimaplib internals the transport relies on (transports/imap/adapter.py) are checked, by name: an
upgrade that renames or drops one fails here and at the transport's start, not in production."""

from __future__ import annotations

import asyncio

import pytest
from aioimaplib.aioimaplib import IMAP4, IMAP4ClientProtocol

from transports.common.credentials import Credentials
from transports.imap import adapter
from transports.imap.adapter import InternalsChanged
from transports.imap.session import open_session
from transports.imap.settings import ImapSettings

from .conftest import Account


def test_the_installed_aioimaplib_has_every_internal_used() -> None:
    adapter.check()


@pytest.mark.parametrize(
    ("owner", "name"),
    [
        (IMAP4ClientProtocol, "_continuation"),
        (IMAP4ClientProtocol, "wait"),
        (IMAP4ClientProtocol, "capability"),
        (IMAP4, "create_client"),
        (IMAP4, "idle_start"),
        (IMAP4, "has_pending_idle"),
    ],
)
def test_a_method_gone_is_named(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> None:
    monkeypatch.delattr(owner, name)
    with pytest.raises(InternalsChanged, match=rf"{owner.__name__}\.{name}\b.*adapter\.py"):
        adapter.check()


def test_an_attribute_gone_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = IMAP4ClientProtocol.__init__

    def without(self: IMAP4ClientProtocol, *args: object) -> None:
        real(self, *args)
        del self.pending_sync_command

    monkeypatch.setattr(IMAP4ClientProtocol, "__init__", without)
    with pytest.raises(InternalsChanged, match="pending_sync_command"):
        adapter.check()


def test_a_changed_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def create_client(self: IMAP4, host: str, port: int, loop: object, ssl_context: object = None) -> None:
        pass

    monkeypatch.setattr(IMAP4, "create_client", create_client)
    with pytest.raises(InternalsChanged, match=r"IMAP4\.create_client"):
        adapter.check()


async def test_a_live_connection_has_what_the_adapter_reads(account: Account) -> None:
    """The instance attributes set only on a real connection: the connection task, the helper task sets
    and the socket, which ``close`` ends."""
    settings = ImapSettings.model_validate({k: v for k, v in account.settings().items() if k != "provider"})
    session = await open_session(settings, Credentials(settings), None)
    client = session._client
    assert adapter.connection(client).done()
    assert isinstance(client.protocol.tasks, set) and isinstance(client.tasks, set)
    socket = adapter.transport(client)
    assert isinstance(socket, asyncio.BaseTransport) and not socket.is_closing()
    session.close()
    assert socket.is_closing() and not session.alive
