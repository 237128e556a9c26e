"""``submit_new`` and ``create_message`` + ``submit`` are two paths to one rule (``stores.common.queueing``):
on every built-in store they leave the same queued message behind."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from spoolerd.message import Draft, FolderRole, Message, MessageFlag, NewRecipient, QueueEntry, RecipientKind
from spoolerd.store import MessageStore
from spoolerd.testing import FakeClock

CONTENT = b"Subject: two paths\r\n\r\nbody\r\n"
RECIPIENTS = [NewRecipient("a@example.org", "A"), NewRecipient("b@example.org", kind=RecipientKind.CC)]


async def _queued(store: MessageStore, message_id: str, owner: str | None) -> tuple[Message, QueueEntry]:
    if owner is None:
        message = await store.open(message_id)
    else:  # queued locked: only its owner may look, by taking the lease again
        message = await store.lock(message_id, owner, 60)
    [entry] = [e async for e in store.outgoing_queue() if e.id == message_id]
    return replace(message, id="", writable=False), replace(entry, id="")


@pytest.mark.parametrize(
    ("draft", "submit"),
    [
        ({}, {}),
        ({"message_class": "", "flags": MessageFlag.UNSENT | MessageFlag.RESEND}, {}),
        ({"not_before": 1_900_000_000.0, "priority": 1, "sender": "s@example.org", "subject": "s"}, {}),
        ({"delete_after_submit": True, "ndr_requested": False, "dr_requested": True}, {"preprocess": True}),
        ({"sentmail_folder": "sent"}, {"lock": ("coupled", 60.0)}),
    ],
)
async def test_submit_new_queues_what_create_and_submit_queue(
    store: MessageStore, clock: FakeClock, draft: dict[str, Any], submit: dict[str, Any]
) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    if draft.get("sentmail_folder") == "sent":
        draft = {**draft, "sentmail_folder": (await store.folder(FolderRole.SENT)).id}
    the_draft = Draft(CONTENT, RECIPIENTS, **draft)
    clock.advance(10)
    two_steps = await store.create_message(outbox.id, the_draft)
    await store.submit(two_steps, **submit)
    one_step = await store.submit_new(outbox.id, the_draft, **submit)
    owner = submit["lock"][0] if "lock" in submit else None
    assert await _queued(store, one_step, owner) == await _queued(store, two_steps, owner)
