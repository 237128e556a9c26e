"""What the faces (the control socket's commands, the SMTP listeners) may use of a running daemon.

The runtime (spoolerd/daemon.py) starts the faces, so they must not import it back: they are handed a
``Host``, the narrow part of the daemon they use, and the runtime's ``Daemon`` is one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .config import Config
from .retention import SentKeeper
from .spooler import Spooler
from .store import MessageStore
from .submission import Submitter

__all__ = ["Host", "ReloadResult", "SetOnline", "StatusRows"]

StatusRows = Callable[[], list[dict[str, Any]]]  # a face's rows of the status table
SetOnline = Callable[[str, bool], None]  # (transport, online)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload applied (one entry per key or transport), what waits for a restart, and what it
    tried and could not apply (a listener that cannot bind: ``listeners.NAME: why``)."""

    applied: list[str]
    restart_needed: list[str]
    not_applied: list[str] = field(default_factory=list)


class Host(Protocol):
    @property
    def config(self) -> Config: ...
    @property
    def stores(self) -> Mapping[str, MessageStore]: ...
    @property
    def default_store(self) -> str: ...
    @property
    def spooler(self) -> Spooler: ...
    @property
    def submitter(self) -> Submitter: ...
    @property
    def keepers(self) -> Mapping[str, SentKeeper]: ...  # Sent Items retention, per store
    @property
    def status_rows(self) -> Sequence[StatusRows]: ...  # the faces' own rows (SMTP listeners)
    @property
    def on_set_online(self) -> Sequence[SetOnline]: ...  # told of an operator's online/offline (workers)
    @property
    def reload(self) -> Callable[[], Awaitable[ReloadResult]]:
        """Re-read and apply the config file (spoolerd/reconfigure.py); ConfigError: nothing changed."""
        ...
