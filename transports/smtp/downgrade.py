"""Lines a relay takes and 7-bit downgrades: moved to ``spoolerd.conform``, which the dkim preprocessor
shares (it conforms what it signs, so the transport has nothing left to change); the names stay here."""

from __future__ import annotations

from spoolerd.conform import MAX_LINE, Unchangeable, conform, has_long_lines

__all__ = ["MAX_LINE", "Unchangeable", "conform", "has_long_lines"]
