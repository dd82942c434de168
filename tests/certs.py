"""Certificates made on the spot for TLS tests: nothing is committed, nothing is fetched.

    from certs import make_certs

    certs = make_certs(tmp_path / "pki", clients=["sim-hub", "other-hub"])
    certs.ca                      # the CA certificate (PEM) clients and the broker trust
    certs.server.cert, .key       # the broker's certificate for 127.0.0.1 and localhost
    certs.clients["sim-hub"]      # a client certificate whose CN is "sim-hub"
    certs.authority.server(["broker.example.net"], filename="elsewhere")  # issue more

Keys are EC P-256 (quick to make), certificates are valid for a day (and five minutes back, for
a clock a little behind). The extensions are the ones strict verifiers insist on: a critical
basicConstraints and keyCertSign on the CA, subject and authority key identifiers, and an
extended key usage saying server or client.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=1)
CLOCK_SKEW = dt.timedelta(minutes=5)
SERVER_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class CertAndKey:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


class CertificateAuthority:
    """A self-signed CA that issues server and client certificates into ``directory``."""

    def __init__(self, directory: Path, name: str = "tuquan test CA") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        public = self._key.public_key()
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = self.directory / "ca.pem"
        self.key_path = self.directory / "ca.key"
        _write_pair(self.certificate, self._key, self.cert_path, self.key_path)

    def issue(
        self,
        common_name: str,
        *,
        usage: x509.ObjectIdentifier,
        hosts: Iterable[str] = (),
        filename: str | None = None,
    ) -> CertAndKey:
        """A leaf certificate for ``common_name``; ``hosts`` become its subjectAltName."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        names = [_general_name(host) for host in hosts]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        stem = filename or common_name
        pair = CertAndKey(self.directory / f"{stem}.pem", self.directory / f"{stem}.key")
        _write_pair(cert, key, pair.cert, pair.key)
        return pair

    def server(self, hosts: Iterable[str] = SERVER_HOSTS, filename: str = "server") -> CertAndKey:
        """The broker's certificate: CN and subjectAltName for each of ``hosts``."""
        hosts = list(hosts)
        return self.issue(
            hosts[0], usage=ExtendedKeyUsageOID.SERVER_AUTH, hosts=hosts, filename=filename
        )

    def client(self, common_name: str) -> CertAndKey:
        """A client certificate; with ``use_identity_as_username`` the CN is the username."""
        return self.issue(
            common_name, usage=ExtendedKeyUsageOID.CLIENT_AUTH, filename=f"client-{common_name}"
        )


@dataclass(frozen=True)
class Certs:
    """What ``make_certs`` wrote: the CA certificate, the server's pair, one pair per client,
    and the CA itself to issue more."""

    ca: Path
    server: CertAndKey
    authority: CertificateAuthority = field(repr=False)
    clients: dict[str, CertAndKey] = field(default_factory=dict)


def make_certs(
    directory: Path,
    *,
    clients: Iterable[str] = (),
    hosts: Iterable[str] = SERVER_HOSTS,
    ca_name: str = "tuquan test CA",
) -> Certs:
    """A new CA in ``directory``, a server certificate for ``hosts`` and one client
    certificate per name in ``clients`` (its CN). Returns the files' paths."""
    ca = CertificateAuthority(directory, ca_name)
    return Certs(
        ca=ca.cert_path,
        server=ca.server(hosts),
        authority=ca,
        clients={cn: ca.client(cn) for cn in clients},
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_pair(
    cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, cert_path: Path, key_path: Path
) -> None:
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
