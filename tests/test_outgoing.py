"""spoolerd/outgoing.py: the draft every submission path queues, and the role folders it needs, which
a store is asked for once (each is a read on a store thread, at every submit)."""

from __future__ import annotations

from pathlib import Path

from spoolerd.message import Folder, FolderRole, NewRecipient
from spoolerd.outgoing import outgoing_draft, submit_outgoing
from spoolerd.store import StoreContext
from stores.sqlite import SqliteSettings, SqliteStore
from tests.conftest import FakeClock


class AskedStore(SqliteStore):
    """The SQLite store, noting each role folder it is asked for."""

    asked: list[FolderRole]

    async def folder(self, role: FolderRole) -> Folder:
        self.asked.append(role)
        return await super().folder(role)


def asked_store(tmp_path: Path, clock: FakeClock) -> AskedStore:
    store = AskedStore(SqliteSettings(), StoreContext("local", tmp_path, clock))
    store.asked = []
    return store


async def test_a_store_is_asked_for_its_outbox_and_sent_folders_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    for opened in (1, 2):  # the same file opened again: a new store object asks again
        store = asked_store(tmp_path, clock)
        await store.start()
        try:
            for i in range(3):
                content = f"Subject: {i}\r\n\r\nbody\r\n".encode()
                to = [NewRecipient("a@example.org")]
                draft = await outgoing_draft(store, content, to, sender="b@example.org", subject=str(i))
                assert draft.sentmail_folder == (await SqliteStore.folder(store, FolderRole.SENT)).id
                await submit_outgoing(store, draft)
            assert sorted(store.asked) == [FolderRole.OUTBOX, FolderRole.SENT], store.asked
            outbox = await store.folder(FolderRole.OUTBOX)
            assert len(await store.list_messages(outbox.id)) == 3 * opened
        finally:
            await store.stop()
