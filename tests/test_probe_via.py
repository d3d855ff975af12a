"""The probe through the load balancer (`probe(url, via=...)`): a real TLS server on loopback with a
certificate for www.example.com, signed by a test CA that the probe trusts through SSL_CERT_FILE
(OpenSSL's default verify paths read it). The handshake must name and verify the URL's host, not the
address connected to."""

from __future__ import annotations

import datetime
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deployer.probe import probe

DOMAIN = "www.example.com"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(
    subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(signer, hashes.SHA256())


class Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path == "/healthz" and self.headers.get("Host", "").startswith(DOMAIN)
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def tls_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """An HTTPS server on 127.0.0.1 with a certificate for DOMAIN; the probe trusts its CA. Yields its port."""
    ca_key, site_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test CA", "test CA", ca_key, ca_key, ca=True)
    site = _certificate(DOMAIN, "test CA", site_key, ca_key, ca=False)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "site.pem").write_bytes(site.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "site.key").write_bytes(
        site_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "site.pem", tmp_path / "site.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_domain_answers_through_the_load_balancer_with_a_certificate_that_verifies(tls_site: int) -> None:
    answer = probe(f"https://{DOMAIN}:{tls_site}/healthz", via="127.0.0.1")
    assert answer.status == 200, answer.error


def test_a_certificate_for_another_name_is_no_answer(tls_site: int) -> None:
    answer = probe(f"https://other.example.com:{tls_site}/healthz", via="127.0.0.1")
    assert answer.status is None
    assert answer.error is not None and "certificate" in answer.error.lower()


def test_only_https_is_asked_through_another_host() -> None:
    answer = probe(f"http://{DOMAIN}/healthz", via="127.0.0.1")
    assert answer.error == "only an https URL is asked through another host"
