"""The IMAP transport (entry point ``imap``): downloads an account's mail into a local store and uploads
by APPEND. One module per job: ``settings`` (config), ``wire`` (sans-io parsing), ``adapter`` (every use
of aioimaplib's internals, checked), ``session`` (one logged-in connection), ``download`` (a pass and its
memory in the store), ``upload`` (what an APPEND's answer means), ``sent`` (sent copies owed, kept in the
store), ``transport`` (the loop, flush and status)."""

from .settings import ImapSettings
from .transport import ImapTransport

__all__ = ["ImapSettings", "ImapTransport"]
