"""The ``[spooler]`` section: where the engine keeps its state, how much it does at once and in how many
processes, how it retries and reports (spoolerd/config.py puts it in the whole)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .message_size import DEFAULT_MESSAGE_SIZE_LIMIT

__all__ = ["RetrySection", "SpoolerSection", "Strict", "default_state_dir"]


class Strict(BaseModel):
    """A section whose unknown keys are errors (each names the key)."""

    model_config = ConfigDict(extra="forbid")


def default_state_dir() -> Path:
    """systemd's StateDirectory= when set (first entry), else ./spool."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) if state else Path("spool")


class RetrySection(Strict):
    """Retry timing; the defaults are Postfix's (5 min doubling to ~67 min, give up after 5 days)."""

    initial: float = Field(300.0, gt=0, allow_inf_nan=False, description="seconds before the first retry")
    maximum: float = Field(4000.0, gt=0, allow_inf_nan=False, description="longest wait between two attempts")
    give_up_after: float = Field(
        5 * 86400.0, gt=0, allow_inf_nan=False, description="queue lifetime: then an NDR with 4.4.7"
    )
    min_hint: float = Field(
        60.0, ge=0, allow_inf_nan=False, description="shortest retry-after a transport may ask for"
    )
    destination_hold: float = Field(
        300.0,
        ge=0,
        description="how long a failed destination is left alone (the spooler's: doubling, to maximum)",
    )


class SpoolerSection(Strict):
    """The engine: where its state lives, how much it does at once, how it retries and reports."""

    state_dir: Path = Field(
        default_factory=default_state_dir, description="stores' files and the daemon's lock"
    )
    default_store: str = Field("local", description="the store that sendmail and submit use by default")
    max_in_flight: int = Field(64, ge=1, description="messages being delivered at once, in all")
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="delivery processes (1: the daemon alone); each extra one claims due messages from"
        " the same stores, on another core; max_in_flight is shared out among them; a change takes a"
        " restart",
    )
    daemon_in_flight: int | None = Field(
        None,
        ge=1,
        description="with workers > 1: messages the daemon itself delivers at once, the workers sharing"
        " the rest of max_in_flight (unset: an equal share each); a small one (2) keeps the daemon's"
        " event loop free to take mail in, at a cost to draining a full queue",
    )
    transport_concurrency: int = Field(16, ge=1, description="sends at once per transport (default)")
    destination_concurrency: int = Field(8, ge=1, description="sends at once per destination")
    lease: float = Field(300.0, ge=5, description="seconds a message lock lasts unless renewed")
    send_timeout: float = Field(600.0, gt=0, description="longest one transport send may take")
    reporting_mta: str = Field(default_factory=socket.gethostname, description="name in reports")
    report_original_limit: int = Field(50_000, ge=0, description="larger originals: headers only in an NDR")
    preprocessors: list[str] = Field(
        default_factory=lambda: ["headers"], description="spoolerd.preprocessors"
    )
    delay_warning_after: float | None = Field(None, gt=0, description="seconds queued before a delay warning")
    message_size_limit: int = Field(
        DEFAULT_MESSAGE_SIZE_LIMIT,
        ge=0,
        description="largest message accepted, in bytes, on every submission path (0: no limit)",
    )
    retry: RetrySection = Field(default_factory=RetrySection, description="the [spooler.retry] section")

    def in_flight(self, worker: bool) -> int:
        """A delivering process's share of ``max_in_flight``: an equal share each, or with
        ``daemon_in_flight`` that much for the daemon and the rest shared by the workers. Never all of
        it for the daemon: woken first by what it takes in, it would fill every slot before a worker
        hears of it."""
        if self.workers == 1:
            return self.max_in_flight
        if self.daemon_in_flight is None:
            return self.equal_share
        daemon = min(self.daemon_in_flight, self.max_in_flight)
        return max(1, (self.max_in_flight - daemon) // (self.workers - 1)) if worker else daemon

    @property
    def equal_share(self) -> int:
        """``max_in_flight`` shared equally among the delivering processes."""
        return max(1, self.max_in_flight // self.workers)
