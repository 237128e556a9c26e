"""How ``spoolerctl verify`` shows the daemon's answer: one block per address given."""

from __future__ import annotations

from typing import Any

__all__ = ["show_verify"]


def _route(route: dict[str, Any]) -> str:
    offline = "" if route["online"] else ", offline"
    return f"{route['transport']} ({route['destination']}{offline})"


def show_verify(entries: list[dict[str, Any]]) -> str:
    """``root -> root@example.org``, then each recipient it ends as with the transports that would be
    tried for it in order (each passes on what it does not take), or the reason it cannot be mail."""
    lines = []
    for entry in entries:
        if "error" in entry:
            lines.append(f"{entry['input']}: refused: {entry['error']['message']}")
            continue
        aliased = " (aliased)" if entry["aliased"] else ""
        lines.append(f"{entry['input']} -> {entry['address']}{aliased}")
        for rcpt in entry["recipients"]:
            routes = " then ".join(_route(r) for r in rcpt["routes"]) or "no transport: it would bounce"
            lines.append(f"  {rcpt['address']}: {routes}")
    return "\n".join(lines)
