"""An SMTP transaction as a session builds it: MAIL, the RCPTs accepted and what they resolved to."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..dsn_params import RecipientDsn
from ..message import NewRecipient
from .commands import MailCommand, RcptCommand

__all__ = ["Transaction"]


@dataclass(slots=True)
class Transaction:
    """MAIL, the RCPTs accepted so far and what they resolved to."""

    mail: MailCommand
    recipients: list[RcptCommand] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)  # envelope recipients, in order, deduplicated
    dsn: dict[str, RecipientDsn] = field(default_factory=dict)  # each address's RCPT NOTIFY and ORCPT

    def new_recipients(self) -> list[NewRecipient]:
        """The envelope recipients with the DSN parameters of the RCPT that named them first."""
        return [NewRecipient(a, notify=self.dsn[a].notify, orcpt=self.dsn[a].orcpt) for a in self.addresses]
