"""The ``submit`` command: a message handed over the control socket, completed by the same rules as
sendmail's direct path and queued durably before the answer."""

from __future__ import annotations

import base64
import binascii
import os
from typing import Literal

from .. import maillog
from ..dsn_params import DsnRequest
from ..host import Host
from ..message_size import check_message_size
from ..outgoing import outgoing_draft
from ..retention import filing
from ..submit_rules import Envelope, SubmissionRequest, complete_submission, trusted
from .base import CommandError, Connection, StoreArgs, named_store
from .results import SubmitResult

__all__ = ["SubmitArgs", "submit"]


class SubmitArgs(StoreArgs):
    message: str | None = None  # base64 RFC 5322; or none, and the message follows as the request's body
    sender: str | None = None
    recipients: list[str] | None = None  # none: To, Cc and Bcc of the message (sendmail -t)
    full_name: str | None = None  # the name in the From field added to a message without one
    not_before: float | None = None
    sentmail: bool = True  # file the sent message in Sent Items
    delete_after_submit: bool = False
    ndr: bool = True  # a non-delivery report if a recipient fails (sendmail -N never: off)
    dr: bool = False  # a delivery report once delivered (sendmail -N success)
    priority: Literal[-1, 0, 1] | None = None  # PR_PRIORITY; none: what the message's header asks for
    ret: str | None = None  # RFC 3461 DSN parameters (dsn_params.DsnRequest.parsed): RET, ENVID,
    envid: str | None = None
    notify: str | None = None  # NOTIFY for every recipient,
    recipient_dsn: dict[str, dict[str, str]] | None = None  # NOTIFY/ORCPT by recipient as given


def _envelope(daemon: Host, content: bytes, args: SubmitArgs, conn: Connection) -> Envelope:
    trusts = trusted(daemon.config, conn.uid, os.getuid())
    dsn = DsnRequest.parsed(args.ret, args.envid, args.notify, args.recipient_dsn)  # InvalidArgument
    request = SubmissionRequest(content, args.sender, args.recipients, conn.uid, trusts, args.full_name, dsn)
    return complete_submission(daemon.config, request)  # the same rules as sendmail's direct path


def _submitted_content(args: SubmitArgs, conn: Connection) -> bytes:
    """The message: the request's body, or base64 in ``message`` (one or the other)."""
    if (args.message is None) == (conn.body is None):
        raise CommandError("bad_args", "message: give it base64 in 'message' or as the request's body")
    if conn.body is not None:
        return conn.body
    assert args.message is not None
    try:
        return base64.b64decode(args.message, validate=True)
    except binascii.Error as exc:
        raise CommandError("bad_args", f"message: not base64: {exc}") from exc


async def submit(daemon: Host, args: SubmitArgs, conn: Connection) -> SubmitResult:
    name, store = named_store(daemon, args.store)
    content = _submitted_content(args, conn)
    check_message_size(len(content), daemon.config.spooler.message_size_limit)
    env = _envelope(daemon, content, args, conn)  # BadAddress, NoRecipients: refused, nothing stored
    content, sender, subject, recipients = env.content, env.sender, env.subject, env.recipients
    filed = filing(
        daemon.config.stores[name].sent_copies,
        sentmail=args.sentmail,
        delete_after_submit=args.delete_after_submit,
    )
    draft = await outgoing_draft(
        store,
        content,
        recipients,
        sender=sender,
        subject=subject,
        sentmail=filed.sentmail,
        delete_after_submit=filed.delete_after_submit,
        not_before=args.not_before,
        ndr_requested=args.ndr,
        dr_requested=args.dr,
        priority=args.priority,
        dsn=env.dsn,
    )
    result = await daemon.submitter.submit_new(name, draft)  # created and queued durably before we answer
    message_id = result.message_id
    maillog.accepted(
        queue_id=message_id,
        store=name,
        content=content,
        sender=sender,
        recipients=len(recipients),
        via="socket",
    )
    return {"id": message_id, "store": name, "queued": result.queued, "recipients": len(recipients)}
