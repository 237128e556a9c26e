"""The SMTP listener (a face, DESIGN §1): applications that speak SMTP submit into a store through it.
The daemon starts it like the control server; the layers below never import it."""

from __future__ import annotations

from .server import Listeners

__all__ = ["Listeners"]
