"""FlushQueues(DOWNLOAD) through the spooler for a transport without a flush of its own (seed 000, the
second procedure): a pass that starts now, its failure answered, a failed pass's wait cut short."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from spoolerd import downloads
from spoolerd.errors import TransportError
from spoolerd.message import FolderRole
from spoolerd.retry import Schedule
from tests.conftest import FakeClock
from tests.engine.harness import spooler


async def test_a_failed_download_is_answered_and_a_flush_cuts_its_wait_short(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 000: the spooler flushes the transport itself; a pass that fails makes the flush fail (the
    loop tries again after its wait), and the next flush starts a pass at once, not after that wait."""
    monkeypatch.setattr(downloads, "DOWNLOAD_RETRY", Schedule(60.0, 300.0))  # a minute after a failure
    drop = tmp_path / "drop"  # missing: every pass fails until it is there
    transports = {
        "loopback": {"provider": "loopback"},
        "pull": {"provider": "test-pull", "drop_dir": str(drop)},
    }
    async with spooler(tmp_path, clock, transports) as h:
        pull = h.daemon.spooler.dispatcher.slot("pull")
        assert pull is not None and pull.downloader is not None and pull.flush is None
        with pytest.raises(TransportError):
            await h.spooler.download_now("pull", pull.downloader)
        drop.mkdir()
        (drop / "1.eml").write_bytes(b"From: far@remote.test\r\nSubject: one\r\n\r\nx\r\n")
        with anyio.fail_after(30):  # the loop would wait a minute after its failures: the flush does not
            assert await h.spooler.download_now("pull", pull.downloader) == 1
        assert [m.subject for m in await h.folder(FolderRole.INBOX)] == ["one"]
        assert await h.spooler.download_now("pull", pull.downloader) == 0
