"""The gateway's self-signed certificate (the real gateway ships one too: ``vertx.jks``).

Generated once with ``cryptography`` into ``<data>/sim/webapi/`` (``cert.pem``, ``key.pem``) and
reused while it is valid; clients either trust that file or turn verification off, as they do
with IBKR's gateway.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
VALID_DAYS = 3650


def webapi_dir(data_dir: Path | str) -> Path:
    """Where the simulated Web API keeps its files: ``<data>/sim/webapi``."""
    return Path(data_dir) / "sim" / "webapi"


def ensure_certificate(data_dir: Path | str) -> tuple[Path, Path]:
    """(certificate, private key) PEM paths for ``localhost`` / 127.0.0.1, created if missing or
    expired."""
    folder = webapi_dir(data_dir)
    cert_path, key_path = folder / CERT_NAME, folder / KEY_NAME
    now = datetime.now(UTC)
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc > now + timedelta(days=1):
            return cert_path, key_path
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=VALID_DAYS))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


__all__ = ["ensure_certificate", "webapi_dir"]
