"""The built-in stores record what they find of a content's lines (``ContentLines``), so that a delivery
need not scan the message again (the conformance suite checks that what any store records is true)."""

from __future__ import annotations

from spoolerd.message import ContentLines, Draft, FolderRole, NewRecipient
from spoolerd.store import MessageStore

CLEAN = b"Subject: clean\r\n\r\n" + (b"x" * 76 + b"\r\n") * 20_000  # over a megabyte


async def test_clean_content_is_known_clean_and_a_new_content_is_looked_at_again(store: MessageStore) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    mid = await store.submit_new(outbox.id, Draft(CLEAN, [NewRecipient("b@example.org")]), preprocess=True)
    locked = await store.lock(mid, "spooler", 60)
    assert locked.lines == ContentLines.CRLF | ContentLines.SHORT | ContentLines.NO_DOT
    done = await store.complete_preprocessing(mid, "spooler", content=b"Subject: x\n\n." + b"y" * 1000)
    assert done.lines == ContentLines.NONE
    drafts = await store.folder(FolderRole.DRAFTS)
    draft = await store.create_message(drafts.id, Draft(b"a\r\n.b\r\n", [NewRecipient("b@example.org")]))
    assert (await store.open(draft)).lines == ContentLines.CRLF | ContentLines.SHORT  # a line begins with "."
