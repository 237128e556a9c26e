"""The dkim preprocessor on its own: what it signs verifies with dkimpy's verifier and OpenDKIM's, with
RSA and Ed25519 keys in the forms people have them; what it cannot sign goes out unsigned (or is refused
when signing is required); a key that is unsafe, too short or not a key stops the start."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from spoolerd.conform import conform, crlf
from spoolerd.dkim import DkimPreprocessor, DkimSettings
from spoolerd.errors import ConfigError
from spoolerd.message import Message
from spoolerd.transport import OutcomeKind
from tests.dkim.keys import Dns, opendkim_results, pem_ed25519, rsa_key
from tests.smtp.conftest import message as smtp_message

CONTENT = (
    b"From: Me <me@Example.ORG>\r\nTo: you@example.net\r\nSubject: signed\r\n"
    b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nhello\r\n.dot\r\n"
)


SMIME = (
    b"From: me@example.org\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n--b--\r\n"
)


def message(content: bytes = CONTENT) -> Message:
    return smtp_message("you@example.net", content=content)[0]


def signer(*keys: tuple[str, Path], domain: str = "example.org", **options: Any) -> DkimPreprocessor:
    entries = [{"selector": s, "key_file": str(p)} for s, p in keys]
    return DkimPreprocessor(
        DkimSettings.model_validate(
            {"domains": {domain: entries[0] if len(entries) == 1 else entries}} | options
        )
    )


def signature_tags(content: bytes) -> dict[str, str]:
    field = re.search(rb"(?s)^DKIM-Signature:(.*?)\r\n(?![ \t])", content)
    assert field is not None
    tags = [t.strip() for t in b"".join(field.group(1).split()).decode().split(";") if t.strip()]
    return dict(t.split("=", 1) for t in tags)


async def test_rsa_signature_verifies_and_oversigns_from(dns: Dns, rsa_file: Path, tmp_path: Path) -> None:
    result = await signer(("s1", rsa_file))(message(), 0.0)
    assert result.content is not None and result.refused is None
    signed = result.content
    assert signed.startswith(b"DKIM-Signature: ") and signed.endswith(CONTENT)
    tags = signature_tags(signed)
    assert (tags["a"], tags["d"], tags["s"], tags["c"]) == (
        "rsa-sha256",
        "example.org",
        "s1",
        "relaxed/relaxed",
    )
    assert tags["h"].split(":") == ["from", "to", "subject", "date", "message-id", "from"]  # From once more
    assert dns.verify(signed) == [True]
    assert opendkim_results(dns, signed, tmp_path / "od") == [
        f"dkim=pass (2048-bit key) header.d=example.org header.i=@example.org header.a=rsa-sha256"
        f" header.s=s1 header.b={tags['b'][:8]}"
    ]
    # the verifiers can fail: a second From added on the way, or a changed body, breaks it
    added_from = signed.replace(b"To: ", b"From: evil@example.com\r\nTo: ", 1)
    assert dns.verify(added_from) == [False]
    assert dns.verify(signed.replace(b"hello", b"hellO")) == [False]
    assert "dkim=fail" in opendkim_results(dns, signed.replace(b"hello", b"hellO"), tmp_path / "od2")[0]


async def test_ed25519_and_rsa_sign_side_by_side(
    dns: Dns, rsa_file: Path, ed_file: Path, tmp_path: Path
) -> None:
    pem = tmp_path / "e2.key"
    dns.publish("e2", "example.org", pem_ed25519(pem), kind="ed25519")
    result = await signer(("s1", rsa_file), ("e1", ed_file), ("e2", pem))(message(), 0.0)
    assert result.content is not None
    assert [m.decode() for m in re.findall(rb"a=([\w-]+);", result.content)] == [
        "rsa-sha256",
        "ed25519-sha256",
        "ed25519-sha256",
    ]
    assert dns.verify(result.content) == [True, True, True]
    results = opendkim_results(dns, result.content, tmp_path / "od")
    assert [r.split()[0] for r in results] == ["dkim=pass"] * 3
    assert sorted(re.search(r"header.s=(\w+)", r).group(1) for r in results) == ["e1", "e2", "s1"]


async def test_lf_content_is_signed_as_smtp_carries_it(dns: Dns, rsa_file: Path, tmp_path: Path) -> None:
    lf = CONTENT.replace(b"\r\n", b"\n").rstrip(b"\n")  # bare LF, no final line break
    result = await signer(("s1", rsa_file), canonicalization="simple/simple")(message(lf), 0.0)
    assert result.content is not None
    assert b"\n" not in result.content.replace(b"\r\n", b"")  # CRLF throughout, as on the wire
    assert dns.verify(result.content) == [True]
    assert opendkim_results(dns, result.content, tmp_path / "od")[0].startswith("dkim=pass")


async def test_a_long_line_is_signed_as_the_relay_transport_will_send_it(dns: Dns, rsa_file: Path) -> None:
    long_line = CONTENT + b"x" * 1500 + b"\r\n"
    result = await signer(("s1", rsa_file))(message(long_line), 0.0)
    assert result.content is not None
    assert b"Content-Transfer-Encoding: quoted-printable" in result.content  # re-encoded before signing
    assert conform(crlf(result.content), eight_bit=True) == result.content  # the transport changes nothing
    assert dns.verify(result.content) == [True]


async def test_configured_headers_and_oversigning_of_an_absent_field(dns: Dns, rsa_file: Path) -> None:
    pre = signer(("s1", rsa_file), headers=["From", "Subject", "X-Mailer"], oversign=["from", "reply-to"])
    content = b"X-Mailer: one\r\nX-Mailer: two\r\n" + CONTENT
    result = await pre(message(content), 0.0)
    assert result.content is not None
    assert signature_tags(result.content)["h"].split(":") == [
        "x-mailer",
        "x-mailer",
        "from",
        "subject",
        "from",
        "reply-to",
    ]
    assert dns.verify(result.content) == [True]
    # a Reply-To added on the way breaks it (oversigned while absent); an unsigned field does not
    assert dns.verify(result.content.replace(b"To: ", b"Reply-To: evil@example.com\r\nTo: ", 1)) == [False]
    assert dns.verify(result.content.replace(b"To: you", b"To: them", 1)) == [True]


async def test_no_key_for_the_domain_goes_out_unsigned_with_a_log_line(rsa_file: Path) -> None:
    pre = signer(("s1", rsa_file))
    for content, reason in [
        (CONTENT.replace(b"me@Example.ORG", b"me@other.example"), "no key for the From domain other.example"),
        (
            CONTENT.replace(b"From: Me <me@Example.ORG>\r\n", b""),
            "the message has no From address to sign for",
        ),
        (
            SMIME.replace(b"--b--", b"x" * 999 + b"\r\n--b--"),
            "it cannot be sent as it is: signed content has lines over 998 octets",
        ),
    ]:
        with capture_logs() as logs:
            result = await pre(message(content), 0.0)
        assert result.content is None and result.refused is None
        assert [(e["event"], e["queue_id"]) for e in logs] == [("dkim not signed", "m1")]
        assert logs[0]["reason"].startswith(reason)


async def test_required_signing_refuses_what_it_cannot_sign(rsa_file: Path) -> None:
    pre = signer(("s1", rsa_file), required=True)
    with capture_logs() as logs:
        result = await pre(message(CONTENT.replace(b"Example.ORG", b"other.example")), 0.0)
    assert result.content is None and result.refused is not None
    assert (result.refused.kind, result.refused.status) == (OutcomeKind.FAILED, "5.7.1")
    assert (
        "DKIM signing is required, but no key for the From domain other.example" in result.refused.diagnostic
    )
    assert [(e["event"], e["log_level"], e["dsn"]) for e in logs] == [("dkim refused", "warning", "5.7.1")]
    signed = await pre(message(), 0.0)  # what it can sign, it signs
    assert signed.content is not None and signed.refused is None


async def test_keys_in_every_form_load_and_never_reach_a_log(tmp_path: Path) -> None:
    pkcs1, pkcs8, pem = tmp_path / "pkcs1.key", tmp_path / "pkcs8.key", tmp_path / "ed.pem"
    rsa_key(pkcs1, pkcs8=False)
    rsa_key(pkcs8)
    pem_ed25519(pem)
    with capture_logs() as logs:
        pre = signer(("a", pkcs1), ("b", pkcs8), ("c", pem))
        await pre(message(), 0.0)
    assert [(k.selector, k.algorithm, k.bits) for k in pre.keys["example.org"]] == [
        ("a", b"rsa-sha256", 2048),
        ("b", b"rsa-sha256", 2048),
        ("c", b"ed25519-sha256", 256),
    ]
    assert [e["event"] for e in logs] == ["dkim key loaded"] * 3 + ["dkim signed"]
    shown = repr(logs) + repr(pre.keys)
    for path in (pkcs1, pkcs8, pem):
        body = b"".join(path.read_bytes().splitlines()[1:-1]).decode()
        assert body[:40] not in shown and body[-40:] not in shown


def test_unusable_keys_stop_the_start_each_named(tmp_path: Path) -> None:
    open_to_all, short, garbage, missing = (
        tmp_path / n for n in ("open.key", "short.key", "junk.key", "no.key")
    )
    rsa_key(open_to_all)
    open_to_all.chmod(0o644)
    subprocess.run(
        ["openssl", "genrsa", "-out", str(short), "512"], capture_output=True, check=True, timeout=30
    )
    short.chmod(0o600)
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END PRIVATE KEY-----\n")
    garbage.chmod(0o600)
    settings = DkimSettings.model_validate(
        {
            "domains": {
                "a.example": {"selector": "s", "key_file": str(open_to_all)},
                "b.example": {"selector": "s", "key_file": str(short)},
                "c.example": [
                    {"selector": "s", "key_file": str(garbage)},
                    {"selector": "t", "key_file": str(missing)},
                ],
            }
        }
    )
    with pytest.raises(ConfigError) as caught:
        DkimPreprocessor(settings)
    key = "preprocessors.dkim.domains.{}.key_file: ".format
    assert caught.value.problems == [
        key("a.example") + f"{open_to_all} can be read or written by any user (mode 0644; chmod o-rwx it)",
        key("b.example") + f"{short}: an RSA key of 512 bits; at least 1024 (RFC 8301)",
        key("c.example.0") + f"{garbage} holds no RSA or Ed25519 private key in PEM form",
        key("c.example.1") + f"cannot read {missing}: No such file or directory",
    ]
    assert "secret" not in str(caught.value.problems)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"headers": ["subject"]}, "'from' must be signed"),
        ({"headers": ["from", "Bcc"]}, "'Bcc' must not be signed"),
        ({"oversign": ["received"]}, "'received' must not be signed"),
        ({"headers": ["from", "bad name"]}, "'bad name' is not a header field name"),
        ({"domains": {}}, "at least 1 item"),
        ({"domains": {"exa mple.org": {"selector": "s", "key_file": "/k"}}}, "is not a domain"),
        ({"domains": {"example.org": {"selector": "s;x", "key_file": "/k"}}}, "is not a selector"),
        ({"canonicalization": "loose"}, "relaxed/relaxed"),
    ],
)
def test_settings_are_checked(options: dict[str, Any], problem: str) -> None:
    data = {"domains": {"example.org": {"selector": "s1", "key_file": "/k"}}} | options
    with pytest.raises(ValueError, match=re.escape(problem)):
        DkimSettings.model_validate(data)
