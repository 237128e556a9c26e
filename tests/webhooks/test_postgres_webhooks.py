"""Two daemons sharing one PostgreSQL store, each with the same webhook: every event of the queue they
deliver between them reaches the endpoint exactly once (no crash here, so no repeat), the daemons taking
turns at the webhook's outbox under its lease."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from spoolerd.store import MessageStore
from tests.postgres.test_daemons import (
    PostgresDaemon,
    client_store,
    daemons,
    drained,
    new_root,
    shared,
    submit_all,
)
from tests.smtp.conftest import ServerFactory

from .conftest import SECRET, Receiver

__all__ = ["client_store", "daemons", "shared"]


class HookedDaemon(PostgresDaemon):
    def __init__(self, root: Path, store: dict[str, Any], port: int, url: str) -> None:
        super().__init__(root, store, port)
        self.url = url

    def write_config(self) -> Path:
        cfg = super().write_config()
        secret = self.root / "webhook.secret"
        secret.write_bytes(SECRET + b"\n")
        with cfg.open("a") as fh:
            fh.write(f'[webhooks.app]\nurl = "{self.url}"\nsecret_file = "{secret}"\n')
        return cfg


async def test_two_daemons_send_each_event_once_between_them(
    shared: dict[str, Any],
    client_store: MessageStore,
    smtp_server: ServerFactory,
    daemons: list[PostgresDaemon],
    receiver: Receiver,
) -> None:
    server = smtp_server()
    for _ in range(2):
        daemon = HookedDaemon(new_root(), shared, server.port, f"http://127.0.0.1:{receiver.port}/hook")
        daemons.append(daemon)
        await daemon.start()
    sent = await submit_all(client_store, 60, 1)
    await drained(client_store, 60)
    await receiver.until(lambda r: len(r.taken) >= len(sent))
    events = receiver.events()
    assert Counter((e["message_id"], e["recipient"], e["event"]) for e in events) == Counter(
        (message_id, rcpts[0], "delivered") for message_id, rcpts in sent.items()
    )
    assert len(receiver.posts) == len(sent)  # none twice
    delivered_by = Counter(sum(b'"status": "sent"' in line for line in d.log) > 0 for d in daemons)
    assert delivered_by[True] == 2, "both daemons delivered (and wrote events)"
