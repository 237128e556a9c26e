"""The submission rules the listener shares with the other submission paths (DESIGN §8), one call each:
what a recipient named at RCPT becomes, and the message size limit."""

from __future__ import annotations

from ..config import Config
from ..errors import InvalidArgument
from ..message import check_wire_text

__all__ = ["message_size_limit", "recipient_addresses"]


def message_size_limit(config: Config) -> int:
    """The largest message accepted, in bytes (0: no limit): ``[spooler] message_size_limit``."""
    return config.spooler.message_size_limit


def recipient_addresses(config: Config, address: str) -> list[str]:
    """The envelope recipients an address given at RCPT becomes; InvalidArgument when it cannot be mail."""
    check_wire_text("recipient", address, allow_empty=False)
    if "@" not in address:
        raise InvalidArgument(f"recipient {address!r} has no domain")
    return [address]
