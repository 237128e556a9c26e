"""The control socket under fuzzing (#13 "Done when"), against a real daemon: thousands of malformed
requests from a seeded generator (random bytes, truncated and oversized lines, wrong types, nested JSON,
bad UTF-8, lone surrogates, bodies with wrong lengths). Every one gets an answer with a stable error code
(or, for a client that hangs up mid-body, nothing but a clean close), the daemon stays up, logs no failure,
and a well-formed ping and submit still work after. Bounded in time: it stops after ``BUDGET`` seconds."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from tests.control.conftest import Client, running
from tests.control.test_limits import Limited

SEED = 13
BUDGET = 15.0  # seconds of fuzzing
CASES = 6000  # at most
COMMANDS = ["ping", "status", "queue", "submit", "flush", "abort", "hold", "release", "online", "offline",
            "list", "fetch", "rm", "purge", "verify", "nope", "", "PING", "submit\n"]  # fmt: skip
# codes that would mean the daemon took the client's mistake for its own failure
NOT_THE_CLIENTS = {"internal_error", "store_unavailable", "store_error", "spooler_error"}
STABLE = re.compile(r"[a-z_]+")


class Fuzzed(Limited):
    control = "rate = 1000000.0\nburst = 1000000.0\n"  # every request reaches its handler


@pytest.fixture
async def fuzzed() -> AsyncIterator[Fuzzed]:
    async for d in running(Fuzzed):
        yield d


def text(rng: random.Random) -> str:
    alphabet = ["a", "@", "localhost", " ", ",", "\\", '"', "\r\n", "\x00", "\x7f", "é", "\U0001f600",
                "\ud800", "\udfff", "<>", "\u2028"]  # fmt: skip
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(8)))


def value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**64, -(2**70), rng.randrange(-1000, 1000)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, 1e-320])
    if kind == 4:
        return text(rng)
    if kind == 5:
        return [value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["id", "sender", "recipients", "message", "store", "folder", "force", "wait", "ids", text(rng)]
    return {rng.choice(keys): value(rng, depth + 1) for _ in range(rng.randrange(4))}


def request(rng: random.Random) -> dict[str, Any]:
    return {"id": rng.randrange(10**6), "cmd": rng.choice(COMMANDS), "args": value(rng, 1) or {}}


def encode(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=rng_ascii(obj)).encode("utf-8", "surrogatepass")


def rng_ascii(obj: Any) -> bool:
    return hash(repr(obj)) % 2 == 0  # both escaped and raw UTF-8 (surrogates as CESU-like bytes)


def case(rng: random.Random) -> bytes:
    """One malformed (or odd) piece of the protocol, framed so that it ends at a line's end."""
    kind = rng.randrange(10)
    if kind == 0:  # random bytes
        return rng.randbytes(rng.randrange(1, 200)) + b"\n"
    if kind == 1:  # a truncated request
        line = encode(request(rng))
        return line[: rng.randrange(len(line))] + b"\n"
    if kind == 2:  # wrong types in the envelope
        return encode({"id": value(rng), "cmd": value(rng), "args": value(rng)}) + b"\n"
    if kind == 3:  # right shape, arguments of any type
        return encode(request(rng)) + b"\n"
    if kind == 4:  # nesting
        depth = rng.choice([10, 100, 1000, 5000, 30_000])
        inner = b"[" * depth + b"]" * rng.choice([depth, depth - 1, 0])
        return b'{"id": 1, "cmd": "ping", "args": {"a": ' + inner + b"}}\n"
    if kind == 5:  # bytes that are not UTF-8 inside a string
        line = bytearray(encode({"id": 5, "cmd": "submit", "args": {"sender": "abc@localhost"}}))
        at = line.index(b"abc")
        line[at : at + 1] = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"])
        return bytes(line) + b"\n"
    if kind == 6:  # lone surrogates, escaped
        escaped = rng.choice(["\\ud800", "\\udfff", "\\udc00\\ud800", "\\ud83d"])
        recipient = b'"x' + escaped.encode() + b'@localhost"'
        return b'{"id": 6, "cmd": "submit", "args": {"recipients": [' + recipient + b"]}}\n"
    if kind == 7:  # a body of the wrong type
        body = rng.choice(['"12"', "-1", "1.5", "true", "[]", "1e400", "null"])
        return f'{{"id": 7, "cmd": "submit", "args": {{}}, "body": {body}}}\n'.encode()
    if kind == 8:  # a body followed by more bytes than announced
        head = request(rng) | {"cmd": rng.choice(["submit", "ping", "nope"])}
        body = rng.randbytes(rng.randrange(300))
        extra = rng.randbytes(rng.randrange(1, 50)).replace(b"\n", b" ")
        return encode(head | {"body": len(body)}) + b"\n" + body + extra + b"\n"
    head = request(rng) | {"cmd": "submit"}  # a body of the announced length, of any bytes
    body = rng.randbytes(rng.randrange(2000))
    return encode(head | {"body": len(body)}) + b"\n" + body


def check(answer: dict[str, Any]) -> None:
    assert set(answer) >= {"id"}, answer
    if "event" in answer or answer.get("ok") is True:
        return
    code = answer["error"]["code"]
    assert STABLE.fullmatch(code) and code not in NOT_THE_CLIENTS, answer


async def until(client: Client, sentinel: str) -> bool:
    """Read answers up to the sentinel's; False when the daemon hung up (after an error line)."""
    with anyio.fail_after(30):
        while True:
            try:
                answer = await client.line()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return False
            check(answer)
            if answer["id"] == sentinel:
                return True


async def test_fuzzed_requests_get_stable_errors_and_the_daemon_lives_on(fuzzed: Fuzzed) -> None:
    rng = random.Random(SEED)
    client = await fuzzed.client()
    done = hung_up = 0
    began = time.monotonic()
    while done < CASES and time.monotonic() - began < BUDGET:
        sentinel = f"end{done}"
        payload = case(rng) + json.dumps({"id": sentinel, "cmd": "ping"}).encode() + b"\n"
        await client.stream.send(payload)
        if not await until(client, sentinel):
            hung_up += 1
            client = await fuzzed.client()
        done += 1
        if done % 200 == 0:  # now and then: a client that hangs up mid-body, and an oversized line
            cut = await fuzzed.client()
            await cut.stream.send(b'{"id": 1, "cmd": "submit", "args": {}, "body": 5000}\n' + b"x" * 100)
            await cut.stream.aclose()
            fuzzed.clients.remove(cut)
            answer = await client.raw(b"{" * (1100 * 1024) + b"\n")
            assert answer["error"]["code"] == "line_too_long", answer
    assert done >= 1000, f"only {done} cases in {BUDGET} s"
    assert hung_up == 0, f"{hung_up} connections dropped"
    assert fuzzed.proc is not None and fuzzed.proc.returncode is None
    after = await fuzzed.client()
    assert (await after.ok("ping"))["pong"]
    message = b"From: a@localhost\r\nTo: b@localhost\r\nSubject: after the fuzz\r\n\r\nstill here\r\n"
    head = {"id": "s", "cmd": "submit", "args": {"recipients": ["b@localhost"]}, "body": len(message)}
    answer = await after.raw(json.dumps(head).encode() + b"\n" + message)
    assert answer["ok"] is True and answer["result"]["id"], answer
    failures = [line for line in fuzzed.log if b"failed" in line and b"control" in line]
    assert not failures, failures[:3]  # no "control command failed" / "control connection failed"
