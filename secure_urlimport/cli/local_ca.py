"""A throw-away local CA: a CA certificate and one server certificate it signed.

For ``secure-urlimport demo`` and for ``secure-urlimport serve`` without a real
certificate (the development server, ``devserver.py``, serves with it).  The CA's
private key is never written, so trusting ``ca.pem`` trusts exactly one server
certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .._store.privatedir import make_private_dirs
from ..errors import ConfigurationError

__all__ = ["CLOCK_SKEW", "LOCAL_CA_VALIDITY", "LocalCA", "make_local_ca"]

#: Validity of the certificates made by make_local_ca().
LOCAL_CA_VALIDITY = datetime.timedelta(days=30)
#: Tolerance for a client clock that is a little behind ours.
CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class LocalCA:
    """Files written by :func:`make_local_ca`."""

    ca_file: Path  #: the CA certificate: what clients pass as ``cafile``/``verify``
    cert_file: Path  #: the server certificate followed by the CA certificate
    key_file: Path  #: the server's private key (mode 0600)


def make_local_ca(
    directory: Path, hostnames: Sequence[str] = ("127.0.0.1", "localhost")
) -> LocalCA:
    """Create a CA and a server certificate for *hostnames* in *directory*.

    Writes ``ca.pem``, ``server.pem`` and ``server-key.pem``.  The CA's
    private key is never written: once this returns, nothing else can ever
    be signed by it, so trusting ``ca.pem`` trusts exactly this one server
    certificate.  Keys are EC P-256, which every TLS client accepts; the
    extensions satisfy Python 3.13's VERIFY_X509_STRICT.
    """
    if not hostnames:
        raise ConfigurationError("make_local_ca needs at least one hostname")
    directory = Path(directory)
    make_private_dirs(directory)  # 0700 for the parents too, whatever the umask
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key, now)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = _leaf_certificate(leaf_key, ca_key, ca_cert, hostnames, now)
    files = LocalCA(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    pem = serialization.Encoding.PEM
    _write_file(files.ca_file, ca_cert.public_bytes(pem), 0o644)
    _write_file(files.cert_file, leaf_cert.public_bytes(pem) + ca_cert.public_bytes(pem), 0o644)
    key_pem = leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_file(files.key_file, key_pem, 0o600)
    return files


def _ca_certificate(key: ec.EllipticCurvePrivateKey, now: datetime.datetime) -> x509.Certificate:
    label = f"secure-urlimport local CA {os.urandom(4).hex()}"  # unique per run
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)])
    builder = _builder(name, key, name, key, now)
    builder = builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=0), critical=True
    ).add_extension(_key_usage(cert_sign=True), critical=True)
    return builder.sign(key, hashes.SHA256())


def _leaf_certificate(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hostnames: Sequence[str],
    now: datetime.datetime,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    builder = (
        _builder(subject, key, ca_cert.subject, ca_key, now)
        .add_extension(x509.SubjectAlternativeName(_san_entries(hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    return builder.sign(ca_key, hashes.SHA256())


def _builder(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
) -> x509.CertificateBuilder:
    """Names, validity and key identifiers (required by VERIFY_X509_STRICT)."""
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + LOCAL_CA_VALIDITY)
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    # A CA signs certificates (and CRLs); a TLS server with an EC key signs
    # handshakes (digital_signature).  Nothing else is allowed.
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _san_entries(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _write_file(path: Path, data: bytes, mode: int) -> None:
    # O_NOFOLLOW: a symlink planted in the directory cannot redirect the write;
    # fchmod: an existing file from an earlier run gets the right mode too.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as handle:
        if hasattr(os, "fchmod"):
            os.fchmod(handle.fileno(), mode)
        handle.write(data)
