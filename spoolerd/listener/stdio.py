"""``spoolerd-sendmail -bs``: one SMTP session on standard input and output, with the listener's own
session code and rules (``Session``). The local user running the command is the authenticated identity
(it shows in the Received field), as with Postfix's ``sendmail -bs``; each accepted message is handed to
the daemon over the control socket (``submit``, answered once it is durable), or queued in the store
directly when no daemon runs, exactly as plain ``spoolerd-sendmail`` does. The 250 comes only after that.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
import ssl
import sys
from collections import Counter
from typing import Any

from ..client import ConnectionLost, ControlClient, Refused, Unreachable
from ..listener_config import ListenerSection
from ..message import check_wire_text
from ..message_size import DEFAULT_MESSAGE_SIZE_LIMIT
from ..sendmail_direct import submit_direct  # the same fallback as plain sendmail
from .commands import Reply
from .credentials import Credentials
from .protocol import Session
from .transaction import Transaction

__all__ = ["StdioIntake", "serve_stdio"]

_REFUSALS = {
    "message_too_large": Reply(552, "5.3.4", "message too large"),
    "bad_address": Reply(550, "5.1.3", "bad address"),
    "no_recipients": Reply(554, "5.5.1", "no valid recipients"),
    "invalid_argument": Reply(554, "5.6.0", "message refused"),
}


class StdioIntake:
    """What a ``-bs`` session shares with a listener's: the same attributes ``Session`` reads."""

    name = "sendmail-bs"

    def __init__(self, user: str) -> None:
        self.settings = ListenerSection(address="127.0.0.1:25")  # loopback rules, no TLS, no AUTH
        self.hostname = socket.getfqdn()
        self.tls_context: ssl.SSLContext | None = None
        self.credentials: Credentials | None = None
        self.user = user
        self.counters: Counter[str] = Counter()
        self.closing = False
        self.done = asyncio.Event()

    def admit(self, session: Session) -> bool:
        session.user = self.user  # the local user is the authenticated identity
        return True

    def release(self, session: Session) -> None:
        self.done.set()

    def data_started(self) -> None:
        pass

    def data_finished(self) -> None:
        pass

    def allowed(self, ip: str) -> bool:
        return True

    def size_limit(self) -> int:
        return DEFAULT_MESSAGE_SIZE_LIMIT  # the daemon checks its own limit and answers 552 over it

    def resolve(self, address: str) -> tuple[Reply | None, list[str]]:
        try:
            check_wire_text("recipient", address, allow_empty=False)
        except ValueError as exc:
            return Reply(553, "5.1.3", str(exc)[:200]), []
        return None, [address]  # the daemon completes and aliases it, as for any submission

    async def accept(self, session: Session, tx: Transaction, content: bytes) -> Reply:
        reports = tx.mail.dsn(tx.dsn).args()  # RET, ENVID and each RCPT's NOTIFY and ORCPT
        return await asyncio.to_thread(self._submit, tx.mail.sender, tx.addresses, content, reports)

    def _submit(self, sender: str, recipients: list[str], content: bytes, reports: dict[str, Any]) -> Reply:
        try:
            with ControlClient(timeout=None) as client:
                result = client.submit(content, sender=sender, recipients=recipients, **reports)
            return Reply(250, "2.0.0", f"Ok: queued as {result['id']}")
        except Refused as exc:
            return _REFUSALS.get(exc.code, Reply(451, "4.3.0", "try again later"))
        except ConnectionLost:
            return Reply(451, "4.3.0", "the daemon went away; the message may or may not be queued")
        except Unreachable:
            pass
        try:
            return Reply(250, "2.0.0", f"Ok: queued as {submit_direct(content, sender, recipients, reports)}")
        except Exception as exc:
            code = getattr(exc, "code", "")
            return _REFUSALS.get(code, Reply(451, "4.3.0", "cannot queue the message now"))


class _Duplex(asyncio.Transport):
    """Standard input (a read pipe) and output (written directly: a reply is a few bytes, and stdout may
    be a pipe, a file or a terminal) as one transport, for a protocol written for sockets."""

    def __init__(self, reader: asyncio.ReadTransport, out: int, forward: _Forward) -> None:
        super().__init__()
        self._reader, self._out, self._forward = reader, out, forward
        self._closed = False

    def write(self, data: Any) -> None:
        if not self._closed:
            view = memoryview(bytes(data))
            while view:
                view = view[os.write(self._out, view) :]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 0) if name == "peername" else default

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._reader.close()
            self._forward.end()

    def pause_reading(self) -> None:
        self._reader.pause_reading()

    def resume_reading(self) -> None:
        self._reader.resume_reading()

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return False

    def abort(self) -> None:
        self.close()


class _Forward(asyncio.Protocol):
    """Hands standard input's events to the session once it is attached (what came before is kept)."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.early: list[bytes] = []
        self.eof = False
        self.ended = False

    def attach(self, session: Session) -> None:
        self.session = session
        for data in self.early:
            session.data_received(data)
        if self.eof:
            self.eof_received()

    def data_received(self, data: bytes) -> None:
        if self.session is None:
            self.early.append(data)
        else:
            self.session.data_received(data)

    def eof_received(self) -> bool | None:
        # unlike a socket's peer, a pipe's writer may send everything and close at once: the commands
        # already read are still answered, then the session ends (Session.handle_exception)
        self.eof = True
        if self.session is not None:
            self.session._reader.feed_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.eof:  # the input broke: the session ends at once, as a socket's would
            self.end(exc)

    def end(self, exc: Exception | None = None) -> None:
        """The session is over (the client quit, the input ended and was answered, or it broke)."""
        if not self.ended and self.session is not None:
            self.ended = True
            self.session.connection_lost(exc)


async def _serve() -> int:
    loop = asyncio.get_running_loop()
    intake = StdioIntake(getpass.getuser())
    forward = _Forward()
    stdin = os.fdopen(os.dup(sys.stdin.fileno()), "rb", 0)
    reader, _ = await loop.connect_read_pipe(lambda: forward, stdin)
    session = Session(intake, loop)
    session.connection_made(_Duplex(reader, sys.stdout.fileno(), forward))
    forward.attach(session)
    await intake.done.wait()
    return 0


def serve_stdio() -> int:
    """Run one SMTP session on stdin/stdout (sendmail -bs); exit 0 once the client quits or hangs up."""
    return asyncio.run(_serve())


if __name__ == "__main__":
    sys.exit(serve_stdio())
