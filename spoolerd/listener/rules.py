"""The submission rules the listener shares with the other submission paths (DESIGN §8), one call each:
what a recipient named at RCPT becomes (the address syntax, default domain and ``[aliases]`` of
``submit_rules``), and the message size limit."""

from __future__ import annotations

from ..addressing import AddressPolicy, expand_aliases, parse_address
from ..config import Config
from ..submit_rules import address_policy

__all__ = ["RecipientRules", "message_size_limit"]


def message_size_limit(config: Config) -> int:
    """The largest message accepted, in bytes (0: no limit): ``[spooler] message_size_limit``."""
    return config.spooler.message_size_limit


def _expanded(policy: AddressPolicy, address: str) -> list[str]:
    mailbox = parse_address(address)
    return [m.address for m, _kind in expand_aliases(policy, [(mailbox, "to")])]


class RecipientRules:
    """The envelope recipients an address given at RCPT becomes: completed with the default domain
    (``<postmaster>``) and aliased, as every submission path does; ``BadAddress`` when it cannot be
    mail. Asked at every RCPT, so the address policy is built once per config (a reload brings a new
    ``Config``; nothing changes one in place) and the answers for recent addresses are kept, as
    Postfix's resolve client keeps its last answer. A refusal is not kept: it is worked out again."""

    KEPT = 1024  # addresses remembered; all forgotten at once when full (no order to keep up per RCPT)

    def __init__(self) -> None:
        self._config: Config | None = None
        self._policy: AddressPolicy | None = None
        self._answers: dict[str, list[str]] = {}

    def addresses(self, config: Config, address: str) -> list[str]:
        if config is not self._config or self._policy is None:
            self._policy = address_policy(config)
            self._config = config
            self._answers = {}
        found = self._answers.get(address)
        if found is None:
            found = _expanded(self._policy, address)
            if len(self._answers) >= self.KEPT:
                self._answers = {}
            self._answers[address] = found
        return list(found)  # the caller's own list: the kept one stays as it was
