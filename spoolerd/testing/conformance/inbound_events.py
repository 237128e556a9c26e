"""Store conformance: inbound delivery, receive folders, events and writers in other processes."""

from __future__ import annotations

import asyncio
import subprocess

import anyio
import pytest

from spoolerd.errors import InvalidArgument, NotFound
from spoolerd.events import NewMail, QueueChanged
from spoolerd.message import (
    Draft,
    FolderRole,
    InboundMessage,
    MessageFlag,
    NewRecipient,
)
from spoolerd.store import MessageStore
from spoolerd.testing import FakeClock, StoreFactory


async def test_deliver_files_into_the_inbox_and_announces_new_mail(
    store: MessageStore, clock: FakeClock
) -> None:
    inbox = await store.folder(FolderRole.INBOX)
    content = b"From: x@example.org\r\nSubject: in\r\n\r\n\xff\xfe 8-bit\r\n"
    async with store.subscribe() as events:
        delivery = await store.deliver(InboundMessage(content, sender="x@example.org", subject="in"))
        event = await events.receive()
    assert delivery.folder_id == inbox.id and delivery.message_class == "IPM.Note"
    assert event == NewMail(store.name, delivery.message_id, inbox.id, "IPM.Note", MessageFlag.NONE)
    m = await store.open(delivery.message_id)
    assert (m.content, m.message_class, m.sender, m.subject) == (content, "IPM.Note", "x@example.org", "in")
    assert m.created_at == clock.now and not m.queued
    assert [s.id for s in await store.list_messages(inbox.id)] == [delivery.message_id]


async def test_a_subscription_takes_only_what_it_accepts(store: MessageStore) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    only_mail = store.subscribe(accept=lambda event: isinstance(event, NewMail))
    async with only_mail, store.subscribe() as everything:
        mid = await store.create_message(outbox.id, Draft(b"Subject: q\r\n\r\nx\r\n", [NewRecipient("a@x")]))
        await store.submit(mid)  # a queue change: the filtered stream never holds it
        delivery = await store.deliver(InboundMessage(b"Subject: in\r\n\r\nx\r\n"))
        with anyio.fail_after(5):
            while not isinstance(await everything.receive(), NewMail):
                pass
        assert [e.message_id for e in only_mail.pending()] == [delivery.message_id]


async def test_receive_folder_longest_prefix_wins(store: MessageStore) -> None:
    inbox = await store.folder(FolderRole.INBOX)
    notes = await store.create_folder("Notes")
    secure = await store.create_folder("Secure")
    assert (await store.receive_folder("IPM.Note")).id == inbox.id  # the default always exists
    await store.set_receive_folder("IPM.Note", notes.id)
    # IPM.Note.X has no folder of its own: it falls back to IPM.Note's
    assert (await store.receive_folder("IPM.Note.X")).id == notes.id
    assert (await store.receive_folder("ipm.note.x")).id == notes.id  # classes compare case-insensitively
    assert (await store.receive_folder("IPM.Notebook")).id == inbox.id  # a prefix is whole components
    assert (await store.receive_folder("IPM")).id == inbox.id
    await store.set_receive_folder("IPM.Note.Secure", secure.id)
    assert (await store.receive_folder("IPM.Note.Secure.Signed")).id == secure.id
    assert (await store.receive_folder("IPM.Note.Other")).id == notes.id
    delivery = await store.deliver(InboundMessage(b"x", message_class="IPM.Note.Secure"))
    assert delivery.folder_id == secure.id
    assert await store.receive_folders() == {"ipm.note": notes.id, "ipm.note.secure": secure.id}
    # setting no folder reverts to the next shorter prefix
    await store.set_receive_folder("IPM.Note.Secure", None)
    assert (await store.receive_folder("IPM.Note.Secure")).id == notes.id


async def test_reports_go_to_the_inbox_unless_set(store: MessageStore) -> None:
    inbox = await store.folder(FolderRole.INBOX)
    elsewhere = await store.create_folder("Everything")
    reports = await store.create_folder("Reports")
    await store.set_receive_folder("", elsewhere.id)  # a new default for ordinary classes
    assert (await store.receive_folder("IPM.Note")).id == elsewhere.id
    assert (await store.receive_folder("REPORT.IPM.Note.NDR")).id == inbox.id
    await store.set_receive_folder("REPORT.IPM.Note", reports.id)
    assert (await store.receive_folder("Report.IPM.Note.NDR")).id == reports.id
    assert (await store.receive_folder("REPORT.IPM.Other.DR")).id == inbox.id
    await store.set_receive_folder("", None)
    assert (await store.receive_folder("IPM.Note")).id == inbox.id


async def test_receive_folder_input_is_checked(store: MessageStore) -> None:
    with pytest.raises(NotFound):
        await store.set_receive_folder("IPM.Note", "999999")
    with pytest.raises(InvalidArgument):
        await store.set_receive_folder("IPM Note", None)
    with pytest.raises(InvalidArgument):
        await store.deliver(InboundMessage(b"x", message_class="IPM..Note"))


async def test_queue_changes_are_announced(store: MessageStore, clock: FakeClock) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    rcpt = [NewRecipient("b@example.org")]
    a = await store.create_message(outbox.id, Draft(b"a", rcpt))
    b = await store.create_message(outbox.id, Draft(b"b", rcpt))
    async with store.subscribe() as events:
        await store.submit(a)
        await store.submit(b)
        await store.abort_submit(b)
        await store.lock(a, "spooler", 60)
        await store.unlock(a, "spooler", retry_at=clock.now + 60)
        await store.lock(a, "spooler", 60)
        await store.finish(a, "spooler")
        with anyio.fail_after(5):
            seen = [await events.receive() for _ in range(5)]
    reasons = [(e.reason, e.message_id) for e in seen if isinstance(e, QueueChanged)]
    assert reasons == [("submit", a), ("submit", b), ("abort", b), ("retry", a), ("finish", a)]


async def test_a_submit_by_another_process_wakes_a_waiter(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    async with store.subscribe() as events:
        proc = await asyncio.create_subprocess_exec(
            *store_factory.child_command("submit", "1"), stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        out = (await proc.stdout.read()).decode().split()
        assert await proc.wait() == 0
        child_id = out[-1]

        async def queued() -> bool:
            return child_id in [e.id async for e in store.outgoing_queue()]

        with anyio.fail_after(5):
            while True:
                event = await events.receive()
                if isinstance(event, QueueChanged) and event.reason == "external":
                    break
        assert await queued()


async def test_submitted_messages_survive_reopening(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    outbox = await store.folder(FolderRole.OUTBOX)
    mid = await store.create_message(outbox.id, Draft(b"keep me", [NewRecipient("b@example.org")]))
    await store.submit(mid)
    await store_factory.close(store)
    reopened = await store_factory.open()
    m = await reopened.open(mid)
    assert m.queued and m.content == b"keep me"
    assert [e.id async for e in reopened.outgoing_queue()] == [mid]


async def test_store_declares_whether_it_can_queue(store: MessageStore) -> None:
    assert isinstance(store.can_queue, bool)
