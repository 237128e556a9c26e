"""Properties of what the dkim preprocessor signs, over generated messages: whatever the header fields,
body lines and line endings (bare LF, CRLF, mixed; trailing blanks; no final line break), the signed
message verifies with dkimpy, for every canonicalization, and it differs from the content only by the
signature and CRLF line endings."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spoolerd.conform import crlf
from spoolerd.dkim import DkimPreprocessor, DkimSettings, from_domain
from tests.dkim.keys import Dns, seed_ed25519
from tests.smtp.conftest import message

_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
_NAMES = st.sampled_from(["To", "Cc", "Subject", "Reply-To", "X-Mailer", "Content-Type", "Date", "Comments"])
_ENDING = st.sampled_from(["\r\n", "\n"])


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    fields = draw(st.lists(st.tuples(_NAMES, _TEXT, _ENDING), max_size=6))
    at = draw(st.integers(0, len(fields)))
    fields.insert(at, ("From", draw(st.sampled_from(["me@example.org", "Me <me@Example.org>"])), "\r\n"))
    lines = draw(st.lists(st.tuples(_TEXT, _ENDING), max_size=8))
    head = "".join(f"{name}:{' ' if value[:1] != ' ' else ''}{value}{end}" for name, value, end in fields)
    body = "".join(text + end for text, end in lines)
    if draw(st.booleans()):
        body = body.rstrip("\r\n")
    return (head + draw(_ENDING) + body).encode("ascii")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=messages(),
    canonicalization=st.sampled_from(
        ["relaxed/relaxed", "relaxed/simple", "simple/relaxed", "simple/simple"]
    ),
)
def test_what_it_signs_verifies(tmp_path: Path, content: bytes, canonicalization: str) -> None:
    dns, key = Dns(), tmp_path / "e1.key"
    dns.publish("e1", "example.org", seed_ed25519(key), kind="ed25519")
    domains = {"example.org": {"selector": "e1", "key_file": str(key)}}
    pre = DkimPreprocessor(DkimSettings(domains=domains, canonicalization=canonicalization))
    assert from_domain(content) == "example.org"
    result = anyio.run(pre, message("you@example.net", content=content)[0], 0.0)
    assert result.content is not None
    signed = re.match(rb"(?s)DKIM-Signature:.*?\r\n(?![ \t])(.*)", result.content)
    assert signed is not None and signed.group(1) == crlf(content)
    assert dns.verify(result.content) == [True]


@given(st.binary(max_size=200))
def test_crlf_changes_only_line_endings(data: bytes) -> None:
    out = crlf(data)
    assert out.endswith(b"\r\n") and crlf(out) == out
    assert b"\n" not in out.replace(b"\r\n", b"") and b"\r" not in out.replace(b"\r\n", b"")
    # line endings only, and a lone CR of the header section a fold (CRLF and a blank) or a blank
    assert re.sub(rb"[\r\n \t]", b"", out) == re.sub(rb"[\r\n \t]", b"", data)


@given(st.binary(max_size=300))
def test_from_domain_reads_anything_without_raising(data: bytes) -> None:
    domain = from_domain(data)
    assert domain is None or (domain == domain.lower() and "@" not in domain)
