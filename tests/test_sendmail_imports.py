"""spoolerd-sendmail starts fast: its submit path imports only the C modules and ``os`` it needs (issue
#17: a sendmail command's start-up is most of its time), and the client's JSON line codec, built on
``_json`` instead of the ``json`` package, reads and writes what ``json`` does."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolerd.client import dumps_line, loads_line

ROOT = Path(__file__).resolve().parent.parent

# what a submit does not need: dependencies, and standard modules that cost start-up time for nothing
NOT_ON_THE_SUBMIT_PATH = {
    "anyio", "pydantic", "structlog", "aiosmtpd", "uvloop",  # dependencies
    "dataclasses", "inspect", "pathlib", "typing", "contextlib", "email", "asyncio", "logging",
    "enum", "re", "json", "socket",  # enum alone costs more than the interpreter's start
}  # fmt: skip


def test_submit_path_imports() -> None:
    # -S: no site, so no editable-install finder; the package comes from the source tree, as installed
    probe = "import sys, spoolerd.sendmail; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    loaded = {name.split(".")[0] for name in done.stdout.split()}
    assert loaded & NOT_ON_THE_SUBMIT_PATH == set()


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to itself."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@given(values)
def test_dumps_line_is_read_by_json_as_it_was(value: Any) -> None:
    line = dumps_line(value)
    assert b"\n" not in line and line.isascii()
    assert same(json.loads(line), value)


@given(values, st.booleans())
def test_loads_line_reads_what_json_writes(value: Any, ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    if not ascii_only and any(0xD800 <= ord(c) <= 0xDFFF for c in raw.decode("utf-8", "surrogatepass")):
        return  # a lone surrogate is not UTF-8: the daemon never writes one raw
    assert same(loads_line(raw + b"\n"), value)


@pytest.mark.parametrize("raw", [b"", b"{", b'{"a": 1} x', b"[1,]", b"nul", b"\xff"])
def test_loads_line_refuses_what_json_refuses(raw: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(raw)
    with pytest.raises(ValueError):
        loads_line(raw)


@given(
    st.integers(1, 2**31),
    st.text(),
    st.dictionaries(st.text(), values, max_size=4),
    st.none() | st.integers(0),
)
def test_the_client_frames_a_request_as_the_protocol_does(
    request_id: int, cmd: str, args: dict[str, Any], body: int | None
) -> None:
    from spoolerd.control.protocol import Request, encode_request

    ours: dict[str, Any] = {"id": request_id, "cmd": cmd, "args": args}
    if body is not None:
        ours["body"] = body
    assert same(
        loads_line(dumps_line(ours)), json.loads(encode_request(Request(request_id, cmd, args, body)))
    )
