"""The committed TEST ONLY certificates chain to the test CA, carry the names PROTOCOL.md lists,
and the wrong-host certificate fails hostname checks only."""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509

from tests.harness.firmware.conftest import REPO

CERTS = REPO / "firmware" / "certs"


def _names(stem: str) -> list[str]:
    cert = x509.load_pem_x509_certificate((CERTS / f"{stem}.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n) for n in san.get_values_for_type(x509.DNSName)] + [
        str(a) for a in san.get_values_for_type(x509.IPAddress)
    ]


def test_dut_certificate_names_match_protocol() -> None:
    protocol = (REPO / "firmware" / "PROTOCOL.md").read_text()
    for name in _names("dut_server"):
        assert f"`{name}`" in protocol


def _handshake(stem: str, server_hostname: str) -> None:
    """A real TLS handshake over loopback: server with ``stem``'s pair, client trusting the test CA."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(CERTS / f"{stem}.crt", CERTS / f"{stem}.key")
    client_ctx = ssl.create_default_context(cafile=str(CERTS / "hil_test_ca.crt"))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(5)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                tls.sendall(b"x")
        finally:
            thread.join(timeout=5)


@pytest.mark.parametrize(
    ("stem", "hostname"), [("dut_server", "hil-dut"), ("lab_server", "10.77.0.1"), ("lab_server", "hil-lab")]
)
def test_servers_verify_against_the_test_ca(stem: str, hostname: str) -> None:
    _handshake(stem, hostname)


def test_wrong_host_certificate_fails_on_the_name_only() -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match=r"Hostname mismatch|doesn't match|IP address mismatch"):
        _handshake("wrong_host", "hil-lab")
    _handshake("wrong_host", "wrong-host.invalid")  # same CA: only the name was wrong


def test_generator_writes_a_fresh_consistent_set(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_certs", CERTS / "make_certs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    assert spec.loader is not None
    spec.loader.exec_module(module)
    written = {p.name for p in module.write_all(tmp_path)}
    assert written == {
        f"{s}.{e}" for s in ("hil_test_ca", "dut_server", "lab_server", "wrong_host") for e in ("crt", "key")
    }
    ca = x509.load_pem_x509_certificate((tmp_path / "hil_test_ca.crt").read_bytes())
    leaf = x509.load_pem_x509_certificate((tmp_path / "dut_server.crt").read_bytes())
    leaf.verify_directly_issued_by(ca)
    assert leaf.not_valid_after_utc.year >= 2100
