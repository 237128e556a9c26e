"""A new outgoing message: its draft, as every submission path builds it (the control socket's
``submit``, sendmail with or without the daemon, the SMTP listener, the spooler's bounce copies), and
its queueing in one transaction. Below the spooler and the delivery stages, so that each may use it."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

from .dsn_params import DsnRequest
from .message import Draft, Folder, FolderRole, NewRecipient
from .message_options import header_options
from .store import MessageStore

__all__ = ["outgoing_draft", "role_folder", "submit_outgoing"]

_role_folders: weakref.WeakKeyDictionary[MessageStore, dict[FolderRole, Folder]] = weakref.WeakKeyDictionary()


async def role_folder(store: MessageStore, role: FolderRole) -> Folder:
    """``store.folder(role)``, asked once per store object: a role folder is made with the store and
    never removed or renumbered (no call removes one, and a queued message already keeps its Sent
    folder's id for as long as it waits). Every submit needs two, each a read on a store thread."""
    try:
        known = _role_folders.setdefault(store, {})
    except TypeError:  # a store that cannot be weakly referenced or hashed: asked every time
        return await store.folder(role)
    folder = known.get(role)
    if folder is None:
        folder = known[role] = await store.folder(role)
    return folder


async def outgoing_draft(
    store: MessageStore,
    content: bytes,
    recipients: Sequence[NewRecipient],
    *,
    sender: str,
    subject: str,
    sentmail: bool = True,
    delete_after_submit: bool = False,
    not_before: float | None = None,
    ndr_requested: bool = True,
    dr_requested: bool = False,
    priority: int | None = None,
    dsn: DsnRequest | None = None,
) -> Draft:
    """A new outgoing message, filed in Sent Items once sent (unless ``sentmail`` is off): what the
    submit command, sendmail and the SMTP listener queue (``submit_outgoing``, or
    ``Submitter.submit_new``). A priority or deferred send time not given is the one the message's
    own header fields ask for (``message_options``). ``dsn``: the RFC 3461 RET and ENVID asked for (the
    recipients carry their own NOTIFY and ORCPT)."""
    sent = await role_folder(store, FolderRole.SENT) if sentmail else None
    if priority is None or not_before is None:
        asked = header_options(content)  # one read of the header section for both
        priority = (asked.priority or 0) if priority is None else priority
        not_before = asked.not_before if not_before is None else not_before
    return Draft(
        content,
        recipients,
        sender=sender,
        subject=subject[:255],
        sentmail_folder=sent.id if sent else None,
        delete_after_submit=delete_after_submit,
        not_before=not_before,
        ndr_requested=ndr_requested,
        dr_requested=dr_requested,
        priority=priority,
        dsn_ret=dsn.ret if dsn else None,
        dsn_envid=dsn.envid if dsn else None,
    )


async def submit_outgoing(
    store: MessageStore, draft: Draft, *, preprocess: bool = False, lock: tuple[str, float] | None = None
) -> str:
    """``draft`` created in the store's Outbox and queued in one transaction (``store.submit_new``)."""
    folder = await role_folder(store, FolderRole.OUTBOX)
    return await store.submit_new(folder.id, draft, preprocess=preprocess, lock=lock)
