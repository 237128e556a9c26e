"""Store conformance: RFC 3461 DSN parameters (RET and ENVID per message, NOTIFY and ORCPT per
recipient) are kept as given through every write, and left unset (None) when not given."""

from __future__ import annotations

import pytest

from spoolerd.dsn_params import Notify, Ret
from spoolerd.errors import InvalidArgument
from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.store import MessageStore

CONTENT = b"From: a@example.org\r\nSubject: dsn\r\n\r\nbody\r\n"


def _draft(**kw: object) -> Draft:
    rcpts = [
        NewRecipient("never@example.org", notify=Notify.NEVER),
        NewRecipient(
            "both@example.org", notify=Notify.SUCCESS | Notify.FAILURE, orcpt="rfc822;Old@example.org"
        ),
        NewRecipient("plain@example.org"),
    ]
    return Draft(CONTENT, rcpts, sender="a@example.org", **kw)  # type: ignore[arg-type]


def _params(store_message: object) -> list[tuple[Notify | None, str | None]]:
    return [(r.notify, r.orcpt) for r in store_message.recipients]  # type: ignore[attr-defined]


WANTED = [
    (Notify.NEVER, None),
    (Notify.SUCCESS | Notify.FAILURE, "rfc822;Old@example.org"),
    (None, None),
]


async def test_dsn_parameters_round_trip_through_create_save_and_submit_new(store: MessageStore) -> None:
    drafts = await store.folder(FolderRole.DRAFTS)
    mid = await store.create_message(drafts.id, _draft(dsn_ret=Ret.HDRS, dsn_envid="QQ+2Bx=1"))
    m = await store.open(mid)
    assert (m.dsn_ret, m.dsn_envid) == (Ret.HDRS, "QQ+2Bx=1")
    assert _params(m) == WANTED
    await store.save(mid, _draft(dsn_ret=Ret.FULL))
    m = await store.open(mid)
    assert (m.dsn_ret, m.dsn_envid) == (Ret.FULL, None)
    assert _params(m) == WANTED

    outbox = await store.folder(FolderRole.OUTBOX)
    queued = await store.open(await store.submit_new(outbox.id, _draft(dsn_envid="id-1")))
    assert (queued.dsn_ret, queued.dsn_envid) == (None, "id-1")
    assert _params(queued) == WANTED
    locked = await store.lock(queued.id, "spooler", 60)
    assert _params(locked) == WANTED and locked.dsn_envid == "id-1"


async def test_dsn_parameters_are_unset_when_not_given(store: MessageStore) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    mid = await store.submit_new(outbox.id, Draft(CONTENT, [NewRecipient("b@example.org")]))
    m = await store.open(mid)
    assert (m.dsn_ret, m.dsn_envid) == (None, None)
    assert _params(m) == [(None, None)]


async def test_preprocessing_keeps_the_dsn_parameters_it_is_given(store: MessageStore) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    mid = await store.submit_new(outbox.id, _draft(dsn_ret=Ret.HDRS), preprocess=True)
    await store.lock(mid, "spooler", 60)
    expanded = [NewRecipient("one@example.org", notify=Notify.DELAY, orcpt="rfc822;list@example.org")]
    done = await store.complete_preprocessing(mid, "spooler", recipients=expanded)
    assert _params(done) == [(Notify.DELAY, "rfc822;list@example.org")]
    assert done.dsn_ret is Ret.HDRS


@pytest.mark.parametrize(
    "bad",
    [
        {"dsn_envid": "caf\u00e9"},
        {"dsn_envid": "x" * 101},
        {"dsn_envid": "line\r\nbreak"},
        {"dsn_ret": "everything"},
        {"orcpt": "no-type-here"},
        {"orcpt": "rfc822;a@b\r\nRCPT TO:<x@y>"},
        {"notify": 3},
    ],
)
async def test_bad_dsn_parameters_are_refused_and_nothing_is_written(
    store: MessageStore, bad: dict[str, object]
) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    per_recipient = {k: v for k, v in bad.items() if k in ("orcpt", "notify")}
    per_message = {k: v for k, v in bad.items() if k not in per_recipient}
    draft = Draft(CONTENT, [NewRecipient("b@example.org", **per_recipient)], **per_message)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        await store.create_message(outbox.id, draft)
    with pytest.raises(InvalidArgument):
        await store.submit_new(outbox.id, draft)
    assert await store.list_messages(outbox.id) == []
