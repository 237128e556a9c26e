"""One error hierarchy for the whole daemon.

Every error carries a stable ``code`` string: it is what the control socket reports and what tests match
on, so a code never changes once published. The MAPI names (``NoAccess``, ``Submitted``, ``NotInQueue``,
``UnableToAbort``, ``NoRecipients``) are kept so a reader recognises the store contract they come from.
"""

from __future__ import annotations

__all__ = [
    "BadAddress",
    "CannotQueue",
    "ConfigError",
    "InvalidArgument",
    "ListenerUnavailable",
    "LockLost",
    "MessageTooLarge",
    "MetricsUnavailable",
    "NoAccess",
    "NoRecipients",
    "NoSupport",
    "NotFound",
    "NotInQueue",
    "PluginError",
    "SpoolerError",
    "StateDirBusy",
    "StoreError",
    "StoreUnavailable",
    "Submitted",
    "TransportError",
    "UnableToAbort",
    "WebhookError",
]


class SpoolerError(Exception):
    """Base of every error spoolerd raises on purpose."""

    code = "spooler_error"


class ConfigError(SpoolerError, ValueError):
    """A configuration file or section is invalid; ``problems`` names each key and what is wrong."""

    code = "bad_config"

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(problems))


class BadAddress(SpoolerError, ValueError):
    """A sender or recipient that cannot be mail (garbage, an empty local part or domain, control
    characters): refused at submission, with the reason, instead of accepted and bounced later."""

    code = "bad_address"


class PluginError(SpoolerError, ImportError):
    """An entry point could not be loaded or does not honour its contract."""

    code = "bad_plugin"


class StateDirBusy(SpoolerError):
    """Another daemon already holds the state directory."""

    code = "state_dir_busy"


class TransportError(SpoolerError, ConnectionError):
    """A transport could not do its part (no connection, refused credentials). Transports turn it into
    per-recipient outcomes; it names the cause and never carries a secret."""

    code = "transport_error"


class MessageTooLarge(SpoolerError, ValueError):
    """A message is over ``message_size_limit``: refused on every submission path, permanently (sendmail
    exits 69 as Postfix's does; SMTP answers 552 5.3.4). The text names the size and the limit."""

    code = "message_too_large"

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"message file too big: {size} bytes is over the message_size_limit of {limit} bytes"
        )


class StoreError(SpoolerError):
    """Base of the message store errors."""

    code = "store_error"


class StoreUnavailable(StoreError, OSError):
    """The store's backing storage could not be opened or written."""

    code = "store_unavailable"


class InvalidArgument(StoreError, ValueError):
    """A value handed to the store is malformed (e.g. CR/LF in an address, a bad message class)."""

    code = "invalid_argument"


class NotFound(StoreError, LookupError):
    """No message or folder with that id."""

    code = "not_found"


class NoAccess(StoreError, PermissionError):
    """The message is locked by the spooler (MAPI_E_NO_ACCESS), or the lock is held by another owner."""

    code = "no_access"


class Submitted(StoreError):
    """The message is in the outgoing queue and may only be read or aborted (MAPI_E_SUBMITTED)."""

    code = "submitted"


class NotInQueue(StoreError):
    """The message is not in the outgoing queue (MAPI_E_NOT_IN_QUEUE)."""

    code = "not_in_queue"


class UnableToAbort(StoreError):
    """The spooler holds the message's lock, so its submission cannot be aborted (MAPI_E_UNABLE_TO_ABORT)."""

    code = "unable_to_abort"


class NoRecipients(StoreError, ValueError):
    """A message with no recipients cannot be submitted (MAPI_E_NO_RECIPIENTS)."""

    code = "no_recipients"


class LockLost(StoreError):
    """The caller no longer holds the message's lease (it expired and was taken, or was never held)."""

    code = "lock_lost"


class NoSupport(StoreError):
    """The operation is not supported by this store or for this caller (MAPI_E_NO_SUPPORT)."""

    code = "no_support"


class CannotQueue(NoSupport):
    """The store cannot queue outgoing mail, so it cannot submit or be the default store."""

    code = "cannot_queue"


class ListenerUnavailable(SpoolerError, OSError):
    """An SMTP listener could not listen on its address (taken, not local, or its TLS files unreadable)."""

    code = "listener_unavailable"


class MetricsUnavailable(SpoolerError, OSError):
    """``[metrics] address`` could not be listened on (taken, or not an address of this host)."""

    code = "metrics_unavailable"


class WebhookError(SpoolerError, ConnectionError):
    """A webhook's endpoint did not take an event: no connection, a timeout, a broken or non-2xx answer."""

    code = "webhook_error"
