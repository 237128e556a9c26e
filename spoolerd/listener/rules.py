"""The submission rules the listener shares with the other submission paths (DESIGN §8), one call each:
what a recipient named at RCPT becomes (the address syntax, default domain and ``[aliases]`` of
``submit_rules``), and the message size limit."""

from __future__ import annotations

from ..addressing import expand_aliases, parse_address
from ..config import Config
from ..submit_rules import address_policy

__all__ = ["message_size_limit", "recipient_addresses"]


def message_size_limit(config: Config) -> int:
    """The largest message accepted, in bytes (0: no limit): ``[spooler] message_size_limit``."""
    return config.spooler.message_size_limit


def recipient_addresses(config: Config, address: str) -> list[str]:
    """The envelope recipients an address given at RCPT becomes: completed with the default domain
    (``<postmaster>``) and aliased, as every submission path does; ``BadAddress`` when it cannot be
    mail."""
    mailbox = parse_address(address)
    expanded = expand_aliases(address_policy(config), [(mailbox, "to")])
    return [m.address for m, _kind in expanded]
