"""The IMAP transport (entry point ``imap``): downloads an account's mail into a local store and uploads
by APPEND. One module per job: ``settings`` (config), ``wire`` (sans-io parsing), ``session`` (one
logged-in connection), ``download`` (a pass and its memory in the store), ``upload`` (what an APPEND's
answer means), ``transport`` (the loop, flush and status)."""

from .settings import ImapSettings
from .transport import ImapTransport

__all__ = ["ImapSettings", "ImapTransport"]
