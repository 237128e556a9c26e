"""A preprocessor may refuse a message (``PreprocessResult.refused``): every pending recipient gets that
outcome, and nothing the preprocessors did is saved, so the next attempt preprocesses again. A DEFERRED
refusal waits for a retry; a FAILED one returns the message (tests/dkim covers it with signing
required)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spoolerd.message import Message, RecipientState, SubmitFlag
from spoolerd.preprocess import PreprocessResult
from spoolerd.transport import Outcome
from tests.conftest import FakeClock
from tests.engine.harness import spooler


@dataclass
class Gate:
    """Refuses with a temporary failure while closed; stamps the content once open."""

    name: str = "gate"
    open: bool = False
    calls: int = 0

    async def __call__(self, message: Message, now: float) -> PreprocessResult:
        self.calls += 1
        if not self.open:
            return PreprocessResult(refused=Outcome.deferred("the signer is not ready", None, "4.7.0"))
        return PreprocessResult(content=b"X-Gate: passed\r\n" + message.content)


async def test_a_deferred_refusal_is_retried_and_preprocessed_again(tmp_path: Path, clock: FakeClock) -> None:
    gate = Gate()
    async with spooler(tmp_path, clock) as h:
        h.spooler.dispatcher.preprocessors = [gate]
        mid = await h.submit("me@localhost")
        await h.spooler.flush(force=True)
        held = await h.message(mid)
        (r,) = held.recipients
        assert (r.state, r.last_status, r.last_text) == (
            RecipientState.DEFERRED,
            "4.7.0",
            "the signer is not ready",
        )
        assert SubmitFlag.PREPROCESS in held.submit_flags  # nothing saved: it preprocesses again
        assert b"X-Gate" not in held.content
        gate.open = True
        await h.spooler.flush(force=True)
        await h.finished(mid)
        sent = await h.message(mid)
    assert gate.calls == 2
    assert sent.recipients[0].state is RecipientState.DELIVERED
    assert sent.content.startswith(b"X-Gate: passed\r\n")
