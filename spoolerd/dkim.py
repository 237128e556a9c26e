"""The ``dkim`` preprocessor: DKIM-signs outgoing mail (RFC 6376) with the key of the From domain.

RSA-SHA256 and Ed25519-SHA256 (RFC 8463) keys, one or more per domain (two give two signatures: RSA for
verifiers that know only RSA, Ed25519 beside it), are read once when the daemon starts or reloads,
checked like OpenDKIM's ``RequireSafeKeys`` (no other user may read or write them), and never logged.
It signs after every other preprocessor (``signs = True``), transports' included, on the content as the
smtp transport puts it on the wire (``spoolerd.conform``: CRLF line endings, a part with a line over 998
octets re-encoded), so neither the transport nor the relay hop changes what it signed.

A message it cannot sign (no key for its From domain, no From, S/MIME content with a line no relay
takes, a header dkimpy cannot parse) goes out unsigned with a log line, as OpenDKIM passes mail whose
sender has no SigningTable entry. With ``required = true`` it is refused instead: every recipient fails
with 5.7.1 and the sender gets a non-delivery report, as OpenDKIM's ``On-SignatureError = reject`` bounces
what it cannot sign.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import anyio.to_thread
import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .addressing import parse_address_list
from .conform import Unchangeable, conform, crlf
from .envelope import header_fields
from .errors import ConfigError
from .fsutil import unsafe_secret
from .message import Message
from .preprocess import PreprocessResult
from .transport import Outcome

try:
    import dkim
    import dkim.crypto
except ImportError as exc:  # pragma: no cover - only without the extra
    raise ImportError(f"the dkim preprocessor needs dkimpy: pip install 'spoolerd[dkim]' ({exc})") from exc

__all__ = ["DkimPreprocessor", "DkimSettings", "DomainKey", "SigningKey", "load_key"]

log = structlog.get_logger("spoolerd.dkim")

RSA = b"rsa-sha256"
ED25519 = b"ed25519-sha256"
MIN_RSA_BITS = 1024  # RFC 8301 §3.2: verifiers must accept 1024 to 4096; shorter keys are not trusted
# RFC 6376 §5.4.1's suggestions (dkimpy's DKIM.SHOULD): the fields that carry what a reader sees
DEFAULT_HEADERS = tuple(name.decode("ascii") for name in dkim.DKIM.SHOULD)
_NEVER_SIGNED = frozenset(name.decode("ascii") for name in dkim.DKIM.SHOULD_NOT)  # §5.4: trace fields, Bcc
_FIELD_NAME = re.compile(r"^[!-9;-~]+$")
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
# a PKCS#8 Ed25519 private key (RFC 8410) is this DER prefix and the 32-byte seed
_ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")


def _dns_name(value: str, what: str) -> str:
    name = value.strip().lower().rstrip(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError(f"{value!r} is not a {what} (ASCII labels; an IDN in its xn-- form)")
    return name


class DomainKey(BaseModel):
    """One signing key of a domain: ``selector`` names its DNS record, ``<selector>._domainkey.<domain>``."""

    model_config = ConfigDict(extra="forbid")

    selector: str = Field(description="the selector (s=) under which the public key is published")
    key_file: Path = Field(
        description="the private key: RSA in PEM (PKCS#1 or PKCS#8, as opendkim-genkey or openssl write"
        " it), or Ed25519 in PEM (PKCS#8, openssl genpkey -algorithm ed25519) or as the base64 seed"
        " (dknewkey, rspamd); readable by the daemon, by no other user"
    )

    @field_validator("selector")
    @classmethod
    def _selector(cls, selector: str) -> str:
        return _dns_name(selector, "selector")


class DkimSettings(BaseModel):
    """``[preprocessors.dkim]``: the signing domains and what a signature covers."""

    model_config = ConfigDict(extra="forbid")

    domains: dict[str, DomainKey | list[DomainKey]] = Field(
        description='[preprocessors.dkim.domains."example.org"] selector and key_file; [[...]] twice for'
        " two signatures (RSA and Ed25519). The From domain picks the key (exact match)",
        min_length=1,
    )
    headers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_HEADERS),
        description="header fields to sign, each occurrence present (default: RFC 6376 §5.4.1's list)",
    )
    oversign: list[str] = Field(
        default_factory=lambda: ["from"],
        description="fields signed once more than they occur, so none can be added on the way (as"
        " OpenDKIM's OversignHeaders; also for absent ones, e.g. reply-to)",
    )
    canonicalization: Literal["relaxed/relaxed", "relaxed/simple", "simple/relaxed", "simple/simple"] = Field(
        "relaxed/relaxed", description="header/body canonicalization (c=)"
    )
    required: bool = Field(
        False,
        description="false: a message it cannot sign goes out unsigned (a log line); true: it is returned"
        " to its sender (5.7.1 NDR), as OpenDKIM's On-SignatureError = reject",
    )

    @field_validator("domains")
    @classmethod
    def _domains(
        cls, domains: dict[str, DomainKey | list[DomainKey]]
    ) -> dict[str, DomainKey | list[DomainKey]]:
        out: dict[str, DomainKey | list[DomainKey]] = {}
        for domain, keys in domains.items():
            name = _dns_name(domain, "domain")
            if name in out:
                raise ValueError(f"{domain!r} is given twice")
            if isinstance(keys, list) and not keys:
                raise ValueError(f"{domain!r}: no key")
            out[name] = keys
        return out

    @field_validator("headers", "oversign")
    @classmethod
    def _field_names(cls, names: list[str]) -> list[str]:
        lowered = []
        for name in names:
            if not _FIELD_NAME.match(name):
                raise ValueError(f"{name!r} is not a header field name")
            if name.lower() in _NEVER_SIGNED:
                raise ValueError(f"{name!r} must not be signed (RFC 6376 §5.4: it changes on the way)")
            lowered.append(name.lower())
        return list(dict.fromkeys(lowered))

    @field_validator("headers")
    @classmethod
    def _from_signed(cls, names: list[str]) -> list[str]:
        if "from" not in names:
            raise ValueError("'from' must be signed (RFC 6376 §5.4)")
        return names

    def keys(self, domain: str) -> list[DomainKey]:
        found = self.domains.get(domain, [])
        return found if isinstance(found, list) else [found]


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A key loaded for signing; its private part is never shown (``repr``, logs)."""

    domain: str
    selector: str
    algorithm: bytes  # RSA or ED25519
    private: bytes = field(repr=False)  # what dkimpy takes: PEM for RSA, the base64 seed for Ed25519
    bits: int  # the RSA modulus' size; 256 for Ed25519


def load_key(path: Path) -> tuple[bytes, bytes, int]:
    """(algorithm, private key as dkimpy takes it, bits) from a key file; ValueError says what is wrong
    without quoting the file."""
    unsafe = unsafe_secret(str(path))
    if unsafe is not None:
        raise ValueError(unsafe)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    if b"-----BEGIN" in data:
        body = re.search(rb"-----BEGIN [A-Z ]+-----\s*(.*?)\s*-----END", data, re.S)
        try:
            der = base64.b64decode(b"".join(body.group(1).split()), validate=True) if body else b""
        except binascii.Error:
            der = b""
        if len(der) == 48 and der.startswith(_ED25519_PKCS8):
            return ED25519, _ed25519_seed(der[16:], path), 256
        try:
            rsa = dkim.crypto.parse_pem_private_key(data)
        except Exception:  # its errors may quote key bytes: say what, not why
            raise ValueError(f"{path} holds no RSA or Ed25519 private key in PEM form") from None
        bits = int(rsa["modulus"]).bit_length()
        if bits < MIN_RSA_BITS:
            raise ValueError(f"{path}: an RSA key of {bits} bits; at least {MIN_RSA_BITS} (RFC 8301)")
        return RSA, data, bits
    try:
        seed = base64.b64decode(b"".join(data.split()), validate=True)
    except binascii.Error:
        seed = b""
    if len(seed) != 32:
        raise ValueError(f"{path} holds neither a PEM key nor a base64 Ed25519 seed of 32 bytes")
    return ED25519, _ed25519_seed(seed, path), 256


def _ed25519_seed(seed: bytes, path: Path) -> bytes:
    try:
        import nacl.signing
    except ImportError:
        raise ValueError(f"{path}: an Ed25519 key needs pynacl (pip install 'spoolerd[dkim]')") from None
    nacl.signing.SigningKey(seed)  # 32 bytes always make a key; this checks that pynacl takes it
    return base64.b64encode(seed)


def load_keys(settings: DkimSettings) -> dict[str, list[SigningKey]]:
    """Every configured key, loaded; a ConfigError names each that cannot be used."""
    problems: list[str] = []
    keys: dict[str, list[SigningKey]] = {}
    for domain, entries in settings.domains.items():
        many = isinstance(entries, list)
        for i, entry in enumerate(settings.keys(domain)):
            where = f"preprocessors.dkim.domains.{domain}" + (f".{i}" if many else "") + ".key_file"
            try:
                algorithm, private, bits = load_key(entry.key_file)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            keys.setdefault(domain, []).append(SigningKey(domain, entry.selector, algorithm, private, bits))
    if problems:
        raise ConfigError(problems)
    return keys


def from_domain(content: bytes) -> str | None:
    """The domain of the (first) From address, lower case; None when there is none to read."""
    for found in header_fields(content):
        if found.key == "from":
            try:
                addresses = parse_address_list(found.value)
            except ValueError:
                return None
            for mailbox in addresses:
                _local, at, domain = mailbox.address.rpartition("@")
                if at and domain:
                    return domain.lower().rstrip(".")
            return None
    return None


class DkimPreprocessor:
    """Entry point ``dkim`` in ``spoolerd.preprocessors`` (module docstring)."""

    name = "dkim"
    signs = True
    Settings = DkimSettings

    def __init__(self, settings: DkimSettings) -> None:
        self.settings = settings
        self.keys = load_keys(settings)  # once, at start or reload: a bad key stops either
        self._canonicalize = tuple(part.encode("ascii") for part in settings.canonicalization.split("/"))
        for domain, keys in self.keys.items():
            for key in keys:
                log.info(
                    "dkim key loaded",
                    domain=domain,
                    selector=key.selector,
                    algorithm=key.algorithm.decode(),
                    bits=key.bits,
                )

    async def __call__(self, message: Message, now: float) -> PreprocessResult:
        domain = from_domain(message.content)
        if domain is None:
            return self._unsigned(message, "the message has no From address to sign for")
        keys = self.keys.get(domain)
        if not keys:
            return self._unsigned(message, f"no key for the From domain {domain}")
        try:  # signed as the smtp transport sends it (CRLF, long lines re-encoded): it then changes nothing
            wire = conform(crlf(message.content), eight_bit=True)
        except Unchangeable as exc:
            return self._unsigned(message, f"it cannot be sent as it is: {exc}")
        try:
            signatures = await anyio.to_thread.run_sync(self._sign, wire, keys)
        except dkim.DKIMException as exc:
            return self._unsigned(message, f"dkimpy cannot sign it: {type(exc).__name__}")
        log.info(
            "dkim signed",
            queue_id=message.id,
            domain=domain,
            selectors=[key.selector for key in keys],
            algorithms=[key.algorithm.decode() for key in keys],
        )
        return PreprocessResult(content=signatures + wire)

    def _sign(self, wire: bytes, keys: Sequence[SigningKey]) -> bytes:
        """The DKIM-Signature fields for ``wire``, one per key (run in a worker thread: an RSA
        signature and the body hash take milliseconds)."""
        out = b""
        for key in keys:
            signer = dkim.DKIM(wire, signature_algorithm=key.algorithm, linesep=b"\r\n")
            present = [name.decode("ascii", "replace").lower() for name, _value in signer.headers]
            wanted = set(self.settings.headers)
            include = [name for name in present if name in wanted] + self.settings.oversign
            signature = signer.sign(
                key.selector.encode("ascii"),
                key.domain.encode("ascii"),
                key.private,
                canonicalize=self._canonicalize,
                include_headers=[name.encode("ascii") for name in include],
            )
            out += cast(bytes, signature)
        return out

    def _unsigned(self, message: Message, reason: str) -> PreprocessResult:
        if self.settings.required:
            log.warning("dkim refused", queue_id=message.id, reason=reason, dsn="5.7.1")
            return PreprocessResult(
                refused=Outcome.failed(f"not sent: DKIM signing is required, but {reason}", None, "5.7.1")
            )
        log.info("dkim not signed", queue_id=message.id, reason=reason)
        return PreprocessResult()
