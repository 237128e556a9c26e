"""Signing keys for the DKIM tests, made with libraries other than the code under test (cryptography for
RSA, PyNaCl for Ed25519), their public halves as DNS TXT records, and two verifiers: dkimpy's, asked
through a DNS function, and OpenDKIM's (``opendkim -t``, its test mode, with ``TestDNSData``)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import dkim
import nacl.encoding
import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

__all__ = ["Dns", "opendkim_results", "pem_ed25519", "rsa_key", "seed_ed25519"]


def rsa_key(path: Path, *, pkcs8: bool = True) -> str:
    """Write an RSA private key (PKCS#8 as openssl 3 writes it, or PKCS#1 as opendkim-genkey does)
    to ``path`` (mode 0600); return the DNS record's p= value."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fmt = serialization.PrivateFormat.PKCS8 if pkcs8 else serialization.PrivateFormat.TraditionalOpenSSL
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))
    path.chmod(0o600)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def seed_ed25519(path: Path) -> str:
    """An Ed25519 key as dknewkey and rspamd write it (the base64 seed); the DNS p= value (RFC 8463)."""
    key = nacl.signing.SigningKey.generate()
    path.write_bytes(key.encode(nacl.encoding.Base64Encoder) + b"\n")
    path.chmod(0o600)
    return key.verify_key.encode(nacl.encoding.Base64Encoder).decode()


def pem_ed25519(path: Path) -> str:
    """An Ed25519 key in PKCS#8 PEM, as ``openssl genpkey -algorithm ed25519`` writes it."""
    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@dataclass
class Dns:
    """The TXT records a test publishes: ``<selector>._domainkey.<domain>`` -> record."""

    records: dict[str, str] = field(default_factory=dict)

    def publish(self, selector: str, domain: str, public: str, kind: str = "rsa") -> None:
        self.records[f"{selector}._domainkey.{domain}"] = f"v=DKIM1; k={kind}; p={public}"

    def txt(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """dkimpy's ``dnsfunc``: the record for a name (it asks with a trailing dot)."""
        text = name.decode() if isinstance(name, bytes) else name
        found = self.records.get(text.rstrip("."))
        return None if found is None else found.encode()

    def verify(self, content: bytes) -> list[bool]:
        """dkimpy's verdict on each DKIM-Signature field, top first."""
        count = len(re.findall(rb"(?im)^dkim-signature:", content))
        verdicts = []
        for i in range(count):
            try:
                verdicts.append(bool(dkim.DKIM(content).verify(idx=i, dnsfunc=self.txt)))
            except dkim.ValidationError:  # a body hash mismatch is raised, a bad signature returned
                verdicts.append(False)
        return verdicts

    def opendkim_data(self, directory: Path) -> Path:
        """The records as an OpenDKIM ``TestDNSData`` file (key, then the value without blanks)."""
        path = directory / "dns.txt"
        path.write_text("".join(f"{k} {v.replace(' ', '')}\n" for k, v in self.records.items()))
        return path


def opendkim_results(dns: Dns, content: bytes, directory: Path) -> list[str]:
    """OpenDKIM's Authentication-Results for ``content`` (``dkim=pass ... header.s=s1``, one a
    signature), from ``opendkim -t`` with the records as test DNS data. Skips (or fails under
    SPOOLERD_REQUIRE_PEERS) where opendkim is not installed: .ci/run installs it."""
    if shutil.which("opendkim") is None:
        reason = "opendkim is not installed (.ci/run installs it: apt-get install opendkim)"
        if os.environ.get("SPOOLERD_REQUIRE_PEERS"):
            pytest.fail(reason)
        pytest.skip(reason)
    directory.mkdir(exist_ok=True)
    conf = directory / "opendkim.conf"
    conf.write_text(f"Mode v\nSyslog no\nTestDNSData file:{dns.opendkim_data(directory)}\n")
    message = directory / "message.eml"
    message.write_bytes(content)
    done = subprocess.run(
        ["opendkim", "-x", str(conf), "-t", str(message), "-vvv"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    results = re.findall(r"dkim=\w+[^;']*", done.stdout + done.stderr)
    assert results, f"opendkim said nothing about a signature:\n{done.stdout}\n{done.stderr}"
    return [" ".join(r.split()) for r in results]
