"""One relay of an SMTP transport: its pooled connections, and the transactions on them. What to write
and what each reply means is ``plan.TransactionPlan``'s, with no I/O; this module only moves its steps
over a connection, each reply under its timeout. A reused connection found dead at MAIL FROM (the relay
timed it out) is replaced once, since nothing was sent on it yet."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from spoolerd import maillog
from spoolerd.transport import Outcome

from .channel import Channel, Connection, ConnectionLost
from .plan import Batches, EnvelopeDsn, Result, Step, TransactionPlan
from .pool import ConnectionPool
from .relays import Delivery
from .replies import outcome_for, requirements
from .session import SessionFailed, describe
from .settings import RelayAddress, SmtpSettings
from .wire import Payload, SmtpProtocolError

__all__ = ["Delivery", "Relay"]

log = structlog.get_logger("spoolerd.transports.smtp")


class Relay:
    def __init__(
        self,
        address: RelayAddress,
        settings: SmtpSettings,
        transport: str,
        opener: Callable[[RelayAddress], Awaitable[Connection]],
    ) -> None:
        self.address = address
        self.peer = address.peer
        self.settings = settings
        self._transport = transport  # its name, for the debug lines
        self._debug = False  # debug lines wanted: looked up once a transaction, not once a reply
        self.pool = ConnectionPool(
            lambda: opener(address),
            size=settings.pool_size,
            per_connection=settings.messages_per_connection,
            idle_timeout=settings.idle_timeout,
            peer=self.peer,
        )

    async def deliver(
        self, sender: str, rcpts: list[str], payload: Payload, dsn: EnvelopeDsn | None = None
    ) -> Delivery:
        """Every recipient through this relay, ``recipients_per_transaction`` at a time; once the relay
        is found down, the recipients left get that outcome without another try."""
        batches = Batches(len(rcpts), self.settings.recipients_per_transaction)
        down: Outcome | None = None
        while (batch := batches.next()) is not None:
            if down is None:
                try:
                    batch_dsn = None if dsn is None else dsn.subset(batch)
                    result = await self._deliver(sender, [rcpts[i] for i in batch], payload, batch_dsn)
                except SessionFailed as exc:
                    down = exc.outcome
                else:
                    if result.closing is not None:
                        down = outcome_for(result.closing, self.peer)
                    batches.done(batch, result)
                    continue
            batches.done(batch, Result([down] * len(batch)))
        return Delivery(batches.outcomes(), down)

    async def _deliver(
        self, sender: str, rcpts: list[str], payload: Payload, dsn: EnvelopeDsn | None
    ) -> Result:
        need = requirements(payload.content, sender, rcpts)
        while True:
            conn = await self.pool.acquire()
            reused = conn.sent > 0
            conn.sent += 1
            self._debug = maillog.debugging()
            if reused and self._debug:
                log.debug(
                    "connection reused", transport=self._transport, relay=self.peer, transaction=conn.sent
                )
            plan = TransactionPlan(
                sender,
                rcpts,
                payload,
                need,
                extensions=conn.extensions,
                pipelining=conn.pipelining,
                peer=self.peer,
                reused=reused,
                dsn=dsn,
            )
            done = Result([])
            try:
                done = await self._transaction(conn.channel, plan)
            finally:
                self.pool.release(conn, reusable=done.reusable)
            if not done.stale:  # else a fresh connection next, which is never stale
                return done

    async def _transaction(self, channel: Channel, plan: TransactionPlan) -> Result:
        """The plan's steps on the wire: its writes, and each reply it waits for, under its timeout."""
        step = plan.start()
        while isinstance(step, Step):
            try:
                if step.end:  # one send for both (uvloop's writelines gathers them: no megabyte copied)
                    channel.writelines((step.write, step.end))
                elif step.write:
                    channel.write(step.write)
                if step.payload:  # a relay that stops reading the message: RFC 5321's data timeout
                    async with asyncio.timeout(self.settings.data_timeout):
                        await channel.drain()
                code, text = await self._reply(channel, step)
            except (ConnectionLost, SmtpProtocolError, OSError, TimeoutError) as exc:
                diagnostic, status = describe(exc, f"waiting for the reply to {step.expect}")
                return plan.broken(diagnostic, status, lost=isinstance(exc, ConnectionLost))
            step = plan.receive(code, text)
        return step

    async def _reply(self, channel: Channel, step: Step) -> tuple[int, str]:
        ready = channel.next_reply()  # pipelined replies mostly arrive together: no wait, no timer
        if ready is None:
            limit = self.settings.data_timeout if step.payload else self.settings.command_timeout
            async with asyncio.timeout(limit):
                ready = await channel.reply()
        if self._debug:  # replies in a transaction only: the AUTH exchange is over before it begins
            log.debug(
                "reply", relay=self.peer, command=step.expect, code=ready[0], text=" ".join(ready[1].split())
            )
        return ready
