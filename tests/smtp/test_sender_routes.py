"""Routing by envelope sender (``[sender_routes]``, issue #19 part 2): each sender's mail leaves through
its own relay with its own login, the default rule takes the rest, and mail for the local stores stays
local whoever sends it. Two real aiosmtpd relays, each knowing one account, record who logged in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from hypothesis import given
from hypothesis import strategies as st

from spoolerd.config import parse_config
from spoolerd.errors import ConfigError
from spoolerd.message import FolderRole, RecipientState
from spoolerd.routing import SenderRoutes
from tests.conftest import FakeClock
from tests.engine.harness import spooler
from tests.peers.ports import free_port

from .conftest import Handler, ServerFactory
from .test_spooler_smtp import relay

ACCOUNTS = {"alice-login": "alice-pw", "bob-login": "bob-pw"}


class LoginRecorder(Handler):
    """Also records, per message, the identity the client logged in as."""

    def __init__(self) -> None:
        super().__init__()
        self.logins: list[str | None] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.auth_data
        self.logins.append(login.login.decode() if isinstance(login, LoginPassword) else None)
        return await super().handle_DATA(server, session, envelope)


def accounts(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and ACCOUNTS.get(data.login.decode()) == data.password.decode()
    return AuthResult(success=ok, handled=False, auth_data=data)  # kept on the session: who logged in


def login_relay(port: int, login: str, tmp_path: Path) -> dict[str, object]:
    secret = tmp_path / f"{login}.password"
    secret.write_text(ACCOUNTS[login] + "\n")
    secret.chmod(0o600)
    return relay(port, username=login, password_file=str(secret))


def sent(handler: Handler) -> list[tuple[str, list[str]]]:
    return [(r.sender, r.recipients) for r in handler.received]


async def test_each_sender_leaves_through_its_own_relay_and_account(
    tmp_path: Path, clock: FakeClock, smtp_server: ServerFactory
) -> None:
    a, b = LoginRecorder(), LoginRecorder()
    relay_a, relay_b = smtp_server(a, authenticator=accounts), smtp_server(b, authenticator=accounts)
    transports = {
        "loopback": {"provider": "loopback"},
        "relay-a": login_relay(relay_a.port, "alice-login", tmp_path),
        "relay-b": login_relay(relay_b.port, "bob-login", tmp_path),
    }
    routes = {"alice@example.org": "relay-a", "@example.net": "relay-b", "*": "relay-a"}
    async with spooler(tmp_path, clock, transports, sender_routes=routes) as h:
        ids = [
            await h.submit("x@remote.test", "me@localhost", sender="alice@example.org"),
            await h.submit("y@remote.test", sender="Bob@EXAMPLE.net"),
            await h.submit("z@remote.test", sender="carol@example.org"),  # the default
            await h.submit("w@remote.test", sender=""),  # a bounce: the default too
        ]
        await h.spooler.flush(force=True)
        states = [[(r.address, r.state, r.transport) for r in (await h.message(m)).recipients] for m in ids]
        inbox = await h.folder(FolderRole.INBOX)
    delivered = RecipientState.DELIVERED
    assert states == [
        [("x@remote.test", delivered, "relay-a"), ("me@localhost", delivered, "loopback")],
        [("y@remote.test", delivered, "relay-b")],
        [("z@remote.test", delivered, "relay-a")],
        [("w@remote.test", delivered, "relay-a")],
    ]
    assert sorted(sent(a)) == [  # sent concurrently: in any order
        ("<>", ["w@remote.test"]),
        ("alice@example.org", ["x@remote.test"]),
        ("carol@example.org", ["z@remote.test"]),
    ]
    assert a.logins == ["alice-login"] * 3
    assert sent(b) == [("Bob@EXAMPLE.net", ["y@remote.test"])]
    assert b.logins == ["bob-login"]
    assert len(inbox) == 1  # the local copy stayed local


async def test_without_a_default_other_senders_use_the_unbound_transports(
    tmp_path: Path, clock: FakeClock, smtp_server: ServerFactory
) -> None:
    a, shared = LoginRecorder(), LoginRecorder()
    relay_a, relay_shared = (
        smtp_server(a, authenticator=accounts),
        smtp_server(shared, authenticator=accounts),
    )
    transports = {
        "relay-a": login_relay(relay_a.port, "alice-login", tmp_path),
        "relay": login_relay(relay_shared.port, "bob-login", tmp_path),
    }
    async with spooler(tmp_path, clock, transports, sender_routes={"alice@example.org": "relay-a"}) as h:
        mine = await h.submit("x@remote.test", sender="alice@example.org")
        other = await h.submit("y@remote.test", sender="dave@example.org")
        await h.spooler.flush(force=True)
        assert [r.transport for r in (await h.message(mine)).recipients] == ["relay-a"]
        assert [r.transport for r in (await h.message(other)).recipients] == ["relay"]
    assert sent(a) == [("alice@example.org", ["x@remote.test"])]  # relay-a carries alice's mail only
    assert sent(shared) == [("dave@example.org", ["y@remote.test"])]


_ADDRESS = st.tuples(
    st.sampled_from(["a", "b", "Alice"]), st.sampled_from(["example.org", "Example.NET", "x.example.org"])
)


@given(
    sender=_ADDRESS.map(lambda p: f"{p[0]}@{p[1]}") | st.just(""),
    rules=st.dictionaries(
        st.sampled_from(
            ["alice@example.org", "@example.net", "@x.example.org", "*@*.example.org", "b@*", "*"]
        ),
        st.sampled_from(["t1", "t2", "t3"]),
        max_size=5,
    ),
)
def test_sender_rules_pick_the_most_specific_and_keep_the_order(sender: str, rules: dict[str, str]) -> None:
    routes = SenderRoutes(rules)
    transports = [("loopback", 0), ("t1", 1), ("t2", 2), ("t3", 3), ("t4", 4)]
    chosen = routes.transport_for(sender)
    address = sender.casefold()
    domain = address.rpartition("@")[2]
    if "alice@example.org" in rules and address == "alice@example.org":
        assert chosen == rules["alice@example.org"]
    elif f"@{domain}" in rules and address:
        assert chosen == rules[f"@{domain}"]
    elif chosen is None:
        assert not any(p == "*" for p in rules)
    eligible = routes.eligible(sender, transports)
    assert eligible == [t for t in transports if t in eligible]  # config order kept
    assert ("loopback", 0) in eligible and ("t4", 4) in eligible  # no rule names them: every sender's
    bound = [name for name, _ in eligible if name in routes.bound]
    assert bound == ([chosen] if chosen is not None else [])  # of the bound ones, the chosen one only


def test_rules_must_name_a_transport_and_a_sender() -> None:
    data: dict[str, Any] = {"transports": {"relay": {"provider": "loopback"}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data | {"sender_routes": {"@example.org": "relya"}})
    assert caught.value.problems == ["sender_routes.@example.org: no transport 'relya' (known: relay)"]
    for pattern in ("@exa mple.org", "<>", "a b@*"):
        with pytest.raises(ConfigError, match="sender_routes"):
            parse_config(data | {"sender_routes": {pattern: "relay"}})


async def test_flushing_a_sender_bound_transport_sends_its_senders_mail_only(
    tmp_path: Path, clock: FakeClock, smtp_server: ServerFactory
) -> None:
    """FlushQueues with a target transport: a message waits on the relay its sender is routed to."""
    a, b = LoginRecorder(), LoginRecorder()
    port_a, port_b = free_port(), free_port()  # nothing listens yet: the first attempts defer
    transports = {
        "relay-a": login_relay(port_a, "alice-login", tmp_path),
        "relay-b": login_relay(port_b, "bob-login", tmp_path),
    }
    routes = {"alice@example.org": "relay-a", "*": "relay-b"}
    async with spooler(tmp_path, clock, transports, sender_routes=routes) as h:
        alice = await h.submit("x@remote.test", sender="alice@example.org")
        other = await h.submit("y@remote.test", sender="carol@example.org")
        assert (await h.spooler.flush(message_ids=[alice, other])).deferred == 2
        smtp_server(a, port=port_a, authenticator=accounts)
        smtp_server(b, port=port_b, authenticator=accounts)
        result = await h.spooler.flush(transport="relay-b")
        assert (result.messages, result.sent) == (1, 1)
        assert sent(a) == []
        assert sent(b) == [("carol@example.org", ["y@remote.test"])]
        assert (await h.spooler.flush(transport="relay-a")).sent == 1
    assert sent(a) == [("alice@example.org", ["x@remote.test"])]
