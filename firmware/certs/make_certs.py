#!/usr/bin/env python3
"""Generate the HIL *test-only* PKI: a test CA, the DUT's HTTPS certificate, a lab TLS server
certificate and a deliberately wrong-hostname certificate.

TEST ONLY. The private keys are committed to a public repository on purpose: they protect nothing.
Never install the CA in a system trust store.

Run from anywhere: ``python firmware/certs/make_certs.py`` rewrites every file in this directory.
The firmware embeds ``hil_test_ca.crt``, ``dut_server.crt`` and ``dut_server.key`` at build time;
the harness's TLS clients trust ``hil_test_ca.crt`` and its TLS peers serve ``lab_server.*`` and
``wrong_host.*``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
# Long validity so nobody has to regenerate: certificates the firmware checks must not expire in the lab.
NOT_BEFORE = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
NOT_AFTER = dt.datetime(2125, 1, 1, tzinfo=dt.timezone.utc)
ORG = "esp-smoltcp-hil TEST ONLY"


@dataclass(frozen=True)
class Leaf:
    """One server certificate issued by the test CA."""

    stem: str
    common_name: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]


LEAVES = (
    Leaf("dut_server", "hil-dut", ("hil-dut", "hil-dut.local", "localhost"), ("10.77.0.100", "127.0.0.1")),
    Leaf("lab_server", "hil-lab", ("hil-lab", "hil-lab.local", "localhost"), ("10.77.0.1", "127.0.0.1")),
    # Signed by the same CA, so a client that rejects it can only be rejecting the host name.
    Leaf("wrong_host", "wrong-host.invalid", ("wrong-host.invalid",), ()),
)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    fmt = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Create the test CA (ECDSA P-256, self-signed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("esp-smoltcp-hil TEST ONLY CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(
    leaf: Leaf, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Issue a TLS server certificate for ``leaf`` from the test CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in leaf.dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in leaf.ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(leaf.common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def write_all(out_dir: Path) -> list[Path]:
    """Generate the CA and every leaf into ``out_dir``; return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = make_ca()
    written = []
    pairs = [("hil_test_ca", ca_key, ca_cert)]
    pairs += [(leaf.stem, *make_leaf(leaf, ca_key, ca_cert)) for leaf in LEAVES]
    for stem, key, cert in pairs:
        crt_path, key_path = out_dir / f"{stem}.crt", out_dir / f"{stem}.key"
        crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_key_pem(key))
        written += [crt_path, key_path]
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: regenerate the test PKI."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output directory (default: next to this script)")
    args = parser.parse_args(argv)
    for path in write_all(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
