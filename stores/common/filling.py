"""Filling a store with a large deferred queue in SQL, for benchmarks and cost tests: copies of one
queued message (the template), written by the dialects' test backends (``fill_deferred``)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["FILLED_COLUMNS", "copy_children"]

FILLED_COLUMNS = ("id", "client_submit_time", "due_at", "next_attempt")  # a copy's own, not the template's


def copy_children(param: Callable[[int], str]) -> tuple[str, str]:
    """The template's recipients (deferred once) and content, copied to every message after it; the
    template's id is parameter 1 (``param(1)``: the dialect's placeholder)."""
    template = param(1)
    recipients = (
        "INSERT INTO recipients (message_id, idx, address, display_name, address_type, kind, state, attempts)"
        " SELECT m.id, r.idx, r.address, r.display_name, r.address_type, r.kind, 'deferred', 1"
        f" FROM messages m JOIN recipients r ON r.message_id = {template} WHERE m.id > {template}"
    )
    contents = (
        "INSERT INTO contents (message_id, data) SELECT m.id, c.data FROM messages m"
        f" JOIN contents c ON c.message_id = {template} WHERE m.id > {template}"
    )
    return recipients, contents
