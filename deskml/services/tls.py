"""A self-signed TLS certificate for serving HTTPS on a LAN (the seed's HTTPS section).

The certificate names localhost, 127.0.0.1, ::1, this machine's host name and its LAN addresses,
so a phone that trusts it (by installing it, or by pinning its SHA-256 fingerprint) can connect to
https://<lan-ip>:11434 without warnings.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from deskml.services.netinfo import lan_addresses


@dataclass
class CertFiles:
    cert: Path
    key: Path
    fingerprint: str  # SHA-256 of the DER certificate, colon-separated hex
    names: list[str]


def fingerprint_of(cert_pem: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def make_selfsigned(directory: Path, extra_names: list[str] | None = None, days: int = 825,
                    overwrite: bool = False) -> CertFiles:
    """Write cert.pem and key.pem (mode 600) into `directory`; refuses to replace them unless asked."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if not overwrite and (cert_path.exists() or key_path.exists()):
        raise FileExistsError(f"{cert_path} already exists; pass --force to replace it")
    host = socket.gethostname()
    dns = sorted({"localhost", host, *(n for n in extra_names or [] if not _is_ip(n))})
    ips = sorted({"127.0.0.1", "::1", *lan_addresses(), *(n for n in extra_names or [] if _is_ip(n))})
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"deskml on {host}"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deskml (self-signed)")])
    now = dt.datetime.now(dt.UTC)
    alt = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        # CA:TRUE so that clients which only accept CA certificates as trust anchors (Android's user
        # store, Python's ssl with cafile) can trust this one directly.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(cert_pem)
    return CertFiles(cert_path, key_path, fingerprint_of(cert_pem), [*dns, *ips])


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
