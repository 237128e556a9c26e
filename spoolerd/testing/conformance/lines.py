"""Store conformance: what a store records of a content's lines (``Message.lines``) is true of the
content it hands back, however the content was written. A store may know less (``ContentLines.NONE``
is always right), never more: the smtp transport trusts it, and would send a relay bare line ends or
lines over 998 octets."""

from __future__ import annotations

from spoolerd.lines import lines_of
from spoolerd.message import Draft, FolderRole, Message, NewRecipient
from spoolerd.store import MessageStore

HEAD = b"From: a@example.org\r\nSubject: lines\r\n\r\n"
CONTENTS = [
    HEAD + b"body\r\n",
    HEAD + b"a bare\nline feed\r\n",
    HEAD + b"a lone\rcarriage return\r\n",
    HEAD + b"no line end at the end",
    HEAD + b"x" * 999 + b"\r\n",
    HEAD + b"y" * 998 + b"\r\n",
    HEAD + (b"z" * 76 + b"\r\n") * 30_000,  # over a megabyte: a store may write it apart
    HEAD + (b"z" * 76 + b"\r\n") * 20_000 + b"w" * 2_000 + b"\n",
]


def _true_of_its_content(message: Message) -> None:
    assert message.lines & ~lines_of(message.content) == 0, (message.lines, message.content[-40:])


def _draft(content: bytes) -> Draft:
    return Draft(content, [NewRecipient("b@example.org")])


async def test_recorded_lines_are_true_of_the_content(store: MessageStore) -> None:
    drafts = await store.folder(FolderRole.DRAFTS)
    outbox = await store.folder(FolderRole.OUTBOX)
    for content in CONTENTS:
        _true_of_its_content(await store.open(await store.create_message(drafts.id, _draft(content))))
        queued = await store.submit_new(outbox.id, _draft(content))
        _true_of_its_content(await store.lock(queued, "spooler", 60))


async def test_recorded_lines_follow_a_new_content(store: MessageStore) -> None:
    """A saved draft and a preprocessor's change write a new content: what is known of the old one
    must not stay with it."""
    drafts = await store.folder(FolderRole.DRAFTS)
    mid = await store.create_message(drafts.id, _draft(CONTENTS[0]))
    for content in CONTENTS[1:5]:
        await store.save(mid, _draft(content))
        _true_of_its_content(await store.open(mid))
    outbox = await store.folder(FolderRole.OUTBOX)
    queued = await store.submit_new(outbox.id, _draft(CONTENTS[0]), preprocess=True)
    await store.lock(queued, "spooler", 60)
    done = await store.complete_preprocessing(queued, "spooler", content=CONTENTS[4])
    _true_of_its_content(done)
    _true_of_its_content(await store.lock(queued, "spooler", 60))
