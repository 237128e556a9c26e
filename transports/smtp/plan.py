"""One SMTP mail transaction as a plan, with no I/O: what to write and which reply to read next, and
what each reply means for each recipient (in the manner of h11: the caller moves bytes, this decides).

``TransactionPlan.start()`` and ``receive(code, text)`` answer a ``Step`` (write these bytes, then read
the reply to this command) until the transaction is over, when they answer a ``Result``: an outcome
for every recipient, whether the connection may carry another transaction, and who was refused with 452
(too many recipients, RFC 5321 §4.5.3.1.10). ``broken()`` ends it when no reply can come.

With PIPELINING (RFC 2920), MAIL FROM, every RCPT TO and DATA go out in one write and their replies are
read in order (after a refused MAIL the rest are read and ignored); without it, one command a reply.
Either way the same replies give the same outcomes. When the relay offers DSN (RFC 3461), the
submitter's parameters go on as Postfix passes them: RET= and ENVID= on MAIL FROM, NOTIFY= and ORCPT= on
each RCPT TO (ENVID and ORCPT's address in xtext); never to a relay that does not offer DSN. After a
transaction that did not end in 250 the
connection is reset (RSET) and kept only if that works; after a reply SMTP does not allow, it is never
trusted again. ``Batches`` splits the recipients into transactions of ``recipients_per_transaction``.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass, field

from spoolerd.dsn_params import RecipientDsn, Ret, notify_text, xtext_encode
from spoolerd.transport import Outcome

from .downgrade import Unchangeable, conform
from .replies import Reply, Requirements, expected, mail_options, no_reply, outcome_for, requirements
from .wire import DATA_END, Payload

__all__ = ["Batches", "EnvelopeDsn", "Result", "Step", "TransactionPlan"]

MAIL, RCPT, DATA, END, RSET = "MAIL FROM", "RCPT TO", "DATA", "end of DATA", "RSET"


@dataclass(frozen=True, slots=True)
class Step:
    """Write ``write`` (nothing if empty), then read the reply to ``expect``. ``payload``: ``write`` is
    the message itself: wait for it to drain, and wait for its reply under the data timeout."""

    write: bytes
    expect: str
    payload: bool = False
    end: bytes = b""  # DATA's terminator: written with ``write`` in one gathering write, not joined to it


@dataclass(frozen=True, slots=True)
class EnvelopeDsn:
    """The RFC 3461 parameters of one message's envelope: RET and ENVID, and each recipient's NOTIFY
    and ORCPT (in the order of the recipients; none: nothing given)."""

    ret: Ret | None = None
    envid: str | None = None
    recipients: tuple[RecipientDsn, ...] = ()

    def subset(self, positions: Sequence[int]) -> EnvelopeDsn:
        """The same for the recipients at ``positions`` (a batch, or those still waiting)."""
        if not self.recipients:
            return self
        return EnvelopeDsn(self.ret, self.envid, tuple(self.recipients[i] for i in positions))

    def mail_params(self) -> list[str]:
        params = [] if self.ret is None else [f"RET={self.ret.value.upper()}"]
        return params + ([] if self.envid is None else [f"ENVID={xtext_encode(self.envid)}"])

    def rcpt_params(self, position: int) -> list[str]:
        given = self.recipients[position] if position < len(self.recipients) else RecipientDsn()
        params = [] if given.notify is None else [f"NOTIFY={notify_text(given.notify)}"]
        return params + ([] if given.orcpt is None else [f"ORCPT={xtext_encode(given.orcpt)}"])


@dataclass(frozen=True, slots=True)
class Result:
    """What one transaction did. ``stale``: a reused connection the relay had already closed, with
    nothing sent on it: the same transaction goes again on a fresh one (``outcomes`` is empty).
    ``closing``: the relay answered 421 (it is shutting the channel down)."""

    outcomes: list[Outcome]
    reusable: bool = False
    too_many: frozenset[int] = frozenset()
    stale: bool = False
    closing: Reply | None = None


class TransactionPlan:
    def __init__(
        self,
        sender: str,
        rcpts: Sequence[str],
        payload: Payload,
        need: Requirements,
        *,
        extensions: dict[str, str],
        pipelining: bool,
        peer: str,
        reused: bool = False,
        dsn: EnvelopeDsn | None = None,
    ) -> None:
        if need.eight_bit and not need.smtputf8 and "8bitmime" not in extensions:
            payload, need = _seven_bit(payload, need, sender, rcpts)
        self.payload = payload  # what goes out after DATA (in 7 bits for a relay without 8BITMIME)
        self._options = mail_options(need, extensions, peer)
        encoding = "utf-8" if need.smtputf8 else "ascii"
        self._mail = b"MAIL FROM:<" + sender.encode(encoding) + b">"
        dsn = dsn if dsn is not None and "dsn" in extensions else EnvelopeDsn()  # only to a DSN relay
        if not isinstance(self._options, Outcome):
            self._mail = _with_params(self._mail, [*self._options, *dsn.mail_params()])
        self._rcpts = [
            _with_params(b"RCPT TO:<" + r.encode(encoding) + b">", dsn.rcpt_params(i)) + b"\r\n"
            for i, r in enumerate(rcpts)
        ]
        self._peer = peer
        self._pipelined = pipelining
        self._reused = reused
        self._results: list[Outcome | None] = [None] * len(rcpts)
        self._accepted: list[int] = []
        self._too_many: set[int] = set()
        self._sound = True  # every reply was one SMTP allows there
        self._pending: collections.deque[str] = collections.deque()  # replies due, in order
        self._next_rcpt = 0  # whose RCPT reply comes next
        self._refusal: Reply | None = None  # MAIL was refused: what every recipient gets
        self._payload_sent = False
        self._resetting = False
        self._closing: Reply | None = None
        self.answered = False  # some reply came in this transaction

    def start(self) -> Step | Result:
        if isinstance(self._options, Outcome):  # refused before anything is sent: the connection is fine
            return Result([self._options] * len(self._rcpts), reusable=True)
        if self._pipelined:
            self._pending.extend([MAIL, *[RCPT] * len(self._rcpts), DATA])
            return self._step(self._mail + b"\r\n" + b"".join(self._rcpts) + b"DATA\r\n")
        return self._then(MAIL, self._mail + b"\r\n")

    def receive(self, code: int, text: str) -> Step | Result:
        """The next reply, to the command the last ``Step`` named."""
        reply = Reply(code, text, self._pending.popleft())
        if self._reused and not self.answered and code == 421:  # how a relay closes an idle connection
            return Result([], stale=True)
        self.answered = True
        if code == 421 and self._closing is None:
            self._closing = reply
        if reply.command == MAIL:
            return self._mail_reply(reply)
        if reply.command == RCPT:
            return self._rcpt_reply(reply)
        if reply.command == DATA:
            return self._data_reply(reply)
        if reply.command == END:
            return self._end_reply(reply)
        return self._finish(reusable=code == 250)  # RSET

    def broken(self, diagnostic: str, status: str, *, lost: bool) -> Result:
        """No reply can come (``lost``: the relay closed the connection); ``diagnostic`` says why."""
        if self._resetting:  # every outcome is known: only the connection is lost
            return self._finish(reusable=False)
        if self._reused and lost and not self.answered:
            return Result([], stale=True)
        gone = no_reply(diagnostic, self._peer, status)
        outcomes = [r if r is not None else gone for r in self._results]
        return Result(outcomes, False, frozenset(self._too_many), closing=self._closing)

    # -- the replies

    def _mail_reply(self, reply: Reply) -> Step | Result:
        if not expected(reply):
            self._refusal = reply
            self._results = [outcome_for(reply, self._peer)] * len(self._rcpts)
            if self._pending:  # pipelined: the relay still answers each RCPT and the DATA
                return self._step()
            return self._reset(reply)
        if self._pipelined:
            return self._step()
        return self._then(RCPT, self._rcpts[0])

    def _rcpt_reply(self, reply: Reply) -> Step | Result:
        i = self._next_rcpt
        self._next_rcpt += 1
        if self._refusal is None:
            if expected(reply):
                self._accepted.append(i)
            else:
                self._results[i] = outcome_for(reply, self._peer)
                self._sound = self._sound and reply.code >= 400
                if reply.code == 452:
                    self._too_many.add(i)
        if self._pipelined:
            return self._step()
        if self._next_rcpt < len(self._rcpts):
            return self._then(RCPT, self._rcpts[self._next_rcpt])
        if not self._accepted:
            return self._reset()
        return self._then(DATA, b"DATA\r\n")

    def _data_reply(self, reply: Reply) -> Step | Result:
        if reply.code == 354 and (self._refusal is not None or not self._accepted):
            return self._then(END, DATA_END)  # 354 with nobody to send to (a broken relay): empty message
        if self._refusal is not None:
            return self._reset(self._refusal)
        if reply.code != 354:
            for i in self._accepted:
                self._results[i] = outcome_for(reply, self._peer)
            return self._reset(reply)
        self._payload_sent = True
        self._pending.append(END)
        return Step(self.payload.stuffed(), END, payload=True, end=DATA_END)

    def _end_reply(self, reply: Reply) -> Step | Result:
        if not self._payload_sent:  # the reply to an empty message: the connection is in doubt
            return self._finish(reusable=False)
        final = outcome_for(reply, self._peer)
        for i in self._accepted:
            self._results[i] = final
        if reply.code == 250:
            return self._finish(reusable=self._sound)
        return self._reset(reply)

    # -- steps

    def _step(self, write: bytes = b"") -> Step:
        return Step(write, self._pending[0])

    def _then(self, command: str, write: bytes) -> Step:
        self._pending.append(command)
        return self._step(write)

    def _reset(self, reply: Reply | None = None) -> Step | Result:
        """RSET after a transaction that did not end in 250, unless a reply was one SMTP does not allow
        there (then the connection is not trusted again)."""
        if not self._sound or (reply is not None and reply.code < 400):
            return self._finish(reusable=False)
        self._resetting = True
        return self._then(RSET, b"RSET\r\n")

    def _finish(self, *, reusable: bool) -> Result:
        return Result(_all(self._results), reusable, frozenset(self._too_many), closing=self._closing)


@dataclass(slots=True)
class Batches:
    """Recipients in transactions of at most ``limit``; those a transaction refused with 452 while it
    took others go first in the next one, not back to the queue."""

    count: int
    limit: int
    _results: list[Outcome | None] = field(init=False)
    _waiting: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self._results = [None] * self.count
        self._waiting = list(range(self.count))

    def next(self) -> list[int] | None:
        """The positions of the next transaction's recipients, or None when every one has an outcome."""
        if not self._waiting:
            return None
        batch, self._waiting = self._waiting[: self.limit], self._waiting[self.limit :]
        return batch

    def done(self, batch: list[int], result: Result) -> None:
        for position, outcome in zip(batch, result.outcomes, strict=True):
            self._results[position] = outcome
        if result.too_many and len(result.too_many) < len(batch):
            self._waiting = [batch[j] for j in sorted(result.too_many)] + self._waiting

    def outcomes(self) -> list[Outcome]:
        return _all(self._results)


def _seven_bit(
    payload: Payload, need: Requirements, sender: str, rcpts: Sequence[str]
) -> tuple[Payload, Requirements]:
    """RFC 6152 §3: 8-bit content converted to 7 bits for a relay without 8BITMIME, as Postfix does;
    signed content stays as it is, and ``mail_options`` then refuses it (5.6.3). A re-encoded line may
    begin with a dot: the new content is searched for them again."""
    try:
        wire = conform(payload.content, eight_bit=False)
    except Unchangeable:
        return payload, need
    return Payload(wire), requirements(wire, sender, list(rcpts))


def _with_params(command: bytes, params: Sequence[str]) -> bytes:
    """A MAIL or RCPT command with its ESMTP parameters (ASCII: xtext where they carry anything else)."""
    return command + b"".join(b" " + p.encode("ascii") for p in params)


def _all(results: list[Outcome | None]) -> list[Outcome]:
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]
