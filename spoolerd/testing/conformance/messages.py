"""Store conformance: folders, messages, content, open access rules (DESIGN §2-§3)."""

from __future__ import annotations

import pytest

from spoolerd.errors import InvalidArgument, NoAccess, NotFound, Submitted
from spoolerd.message import (
    Access,
    Draft,
    FolderRole,
    MessageFlag,
    NewRecipient,
    RecipientKind,
    SubmitFlag,
)
from spoolerd.store import MessageStore

SIMPLE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hello\r\n\r\nbody\r\n"


def draft(content: bytes = SIMPLE, *recipients: str, **kw: object) -> Draft:
    rcpts = [NewRecipient(r) for r in recipients or ("b@example.org",)]
    return Draft(content, rcpts, **kw)  # type: ignore[arg-type]


async def test_default_folders_have_roles(store: MessageStore) -> None:
    roles = {f.role for f in await store.folders() if f.role is not None}
    assert roles == set(FolderRole)
    root = await store.folder(FolderRole.ROOT)
    for role in FolderRole:
        folder = await store.folder(role)
        assert folder.role is role
        if role is not FolderRole.ROOT:
            assert folder.parent_id == root.id


async def test_user_folder_is_created_under_root_or_a_parent(store: MessageStore) -> None:
    root = await store.folder(FolderRole.ROOT)
    archive = await store.create_folder("Archive")
    sub = await store.create_folder("2026", archive.id)
    assert (archive.parent_id, archive.role) == (root.id, None)
    assert sub.parent_id == archive.id
    assert {archive.id, sub.id} <= {f.id for f in await store.folders()}
    with pytest.raises(NotFound):
        await store.create_folder("x", "999999")
    with pytest.raises(InvalidArgument):
        await store.create_folder("bad\r\nname")


async def test_properties_round_trip(store: MessageStore) -> None:
    drafts = await store.folder(FolderRole.DRAFTS)
    sent = await store.folder(FolderRole.SENT)
    mid = await store.create_message(
        drafts.id,
        Draft(
            SIMPLE,
            [
                NewRecipient("to@example.org", "To Person"),
                NewRecipient("cc@example.org", kind=RecipientKind.CC),
                NewRecipient("bcc@example.org", kind=RecipientKind.BCC),
                NewRecipient("/o=org/cn=x", address_type="EX"),
            ],
            message_class="IPM.Note.Custom",
            flags=MessageFlag.UNSENT | MessageFlag.FROMME,
            priority=1,
            sender="a@example.org",
            subject="hello",
            sentmail_folder=sent.id,
            delete_after_submit=True,
            not_before=1_900_000_000.0,
            ndr_requested=False,
            dr_requested=True,
        ),
    )
    m = await store.open(mid)
    assert (m.id, m.folder_id, m.message_class) == (mid, drafts.id, "IPM.Note.Custom")
    assert m.flags == MessageFlag.UNSENT | MessageFlag.FROMME
    assert (m.priority, m.sender, m.subject, m.size) == (1, "a@example.org", "hello", len(SIMPLE))
    assert (m.sentmail_folder, m.delete_after_submit, m.not_before) == (sent.id, True, 1_900_000_000.0)
    assert (m.ndr_requested, m.dr_requested) == (False, True)
    assert m.client_submit_time is None and not m.queued
    assert [(r.index, r.address, r.display_name, r.address_type, r.kind) for r in m.recipients] == [
        (0, "to@example.org", "To Person", "SMTP", RecipientKind.TO),
        (1, "cc@example.org", "", "SMTP", RecipientKind.CC),
        (2, "bcc@example.org", "", "SMTP", RecipientKind.BCC),
        (3, "/o=org/cn=x", "", "EX", RecipientKind.TO),
    ]
    assert all(not r.responsibility and r.state == "pending" and r.attempts == 0 for r in m.recipients)


async def test_report_requests_default_to_ndr_on_dr_off(store: MessageStore) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    m = await store.open(await store.create_message(outbox.id, draft()))
    assert (m.ndr_requested, m.dr_requested) == (True, False)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(SIMPLE, id="crlf"),
        pytest.param(b"Subject: lf only\n\nbody\nwith bare LF\rand bare CR\n", id="mixed-endings"),
        pytest.param(b"Subject: 8bit\r\n\r\n" + bytes(range(256)) * 8, id="every-byte"),
        pytest.param(b"Subject: long\r\n\r\n" + b"x" * 1_000_000 + b"\r\n", id="one-megabyte-line"),
        pytest.param("Subject: Grüße\r\n\r\nÄÖÜ €\r\n".encode(), id="utf8"),
        pytest.param(b"no final newline", id="no-final-newline"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_content_round_trips_byte_for_byte(store: MessageStore, content: bytes) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    mid = await store.create_message(outbox.id, draft(content))
    m = await store.open(mid)
    assert m.content == content
    assert m.size == len(content)


async def test_ids_are_stable_and_unknown_ids_are_not_found(store: MessageStore) -> None:
    drafts = await store.folder(FolderRole.DRAFTS)
    outbox = await store.folder(FolderRole.OUTBOX)
    first = await store.create_message(drafts.id, draft())
    second = await store.create_message(drafts.id, draft())
    assert first != second
    await store.move(first, outbox.id)
    assert (await store.open(first)).folder_id == outbox.id
    await store.delete(second)
    third = await store.create_message(drafts.id, draft())
    assert third not in (first, second)  # ids are never reused
    for bad in (second, "0", "-1", "abc", "", "1; DROP TABLE messages"):
        with pytest.raises(NotFound):
            await store.open(bad)


async def test_save_replaces_a_draft(store: MessageStore) -> None:
    drafts = await store.folder(FolderRole.DRAFTS)
    mid = await store.create_message(drafts.id, draft(b"old", "one@example.org", subject="old"))
    await store.save(mid, draft(b"new content", "two@example.org", "three@example.org", subject="new"))
    m = await store.open(mid)
    assert (m.content, m.subject, m.size) == (b"new content", "new", 11)
    assert [r.address for r in m.recipients] == ["two@example.org", "three@example.org"]


async def test_list_messages_gives_a_contents_table(store: MessageStore) -> None:
    inbox = await store.folder(FolderRole.INBOX)
    drafts = await store.folder(FolderRole.DRAFTS)
    ids = [
        await store.create_message(drafts.id, draft(subject=f"s{i}", sender="a@example.org"))
        for i in range(3)
    ]
    rows = await store.list_messages(drafts.id)
    assert [r.id for r in rows] == ids
    assert [r.subject for r in rows] == ["s0", "s1", "s2"]
    assert all(r.size == len(SIMPLE) and r.sender == "a@example.org" for r in rows)
    assert await store.list_messages(inbox.id) == []
    with pytest.raises(NotFound):
        await store.list_messages("424242")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("recipient", "victim@example.org\r\nRCPT TO:<other@example.org>"),
        ("recipient", ""),
        ("sender", "a@example.org\r\nDATA"),
        ("class", "IPM Note"),
        ("class", "IPM..Note"),
        ("subject", "hi\r\nBcc: x@example.org"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_written(
    store: MessageStore, field: str, value: str
) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    bad = {
        "recipient": lambda: Draft(SIMPLE, [NewRecipient(value)]),
        "sender": lambda: draft(sender=value),
        "class": lambda: draft(message_class=value),
        "subject": lambda: draft(subject=value),
    }[field]()
    with pytest.raises(InvalidArgument):
        await store.create_message(outbox.id, bad)
    assert await store.list_messages(outbox.id) == []


async def test_open_access_on_a_draft(store: MessageStore) -> None:
    drafts = await store.folder(FolderRole.DRAFTS)
    mid = await store.create_message(drafts.id, draft())
    assert not (await store.open(mid, Access.READ)).writable
    assert (await store.open(mid, Access.MODIFY)).writable
    assert (await store.open(mid, Access.BEST)).writable


async def test_queued_message_modify_is_submitted_best_is_read_only(store: MessageStore) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    sent = await store.folder(FolderRole.SENT)
    mid = await store.create_message(outbox.id, draft())
    await store.submit(mid)
    with pytest.raises(Submitted):
        await store.open(mid, Access.MODIFY)
    best = await store.open(mid, Access.BEST)
    assert best.queued and not best.writable
    assert not (await store.open(mid, Access.READ)).writable
    # a queued message changes only through the spooler: a client may not save, move or delete it
    with pytest.raises(Submitted):
        await store.save(mid, draft(b"changed"))
    with pytest.raises(Submitted):
        await store.move(mid, sent.id)
    with pytest.raises(Submitted):
        await store.delete(mid)
    assert (await store.open(mid)).content == SIMPLE


async def test_open_of_a_locked_message_is_no_access(store: MessageStore) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    mid = await store.create_message(outbox.id, draft())
    await store.submit(mid)
    locked = await store.lock(mid, "spooler-1", 60)
    assert SubmitFlag.LOCKED in locked.submit_flags
    for access in Access:
        with pytest.raises(NoAccess):
            await store.open(mid, access)
    (entry,) = [e async for e in store.outgoing_queue()]
    assert SubmitFlag.LOCKED in entry.submit_flags and entry.lock_owner == "spooler-1"
