"""What the ESP feed tests play the providers with: their own keys, a
self-signed SNS certificate served over local HTTP, and the signatures each
provider would put on a delivery."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from outreach.webhooks.esp.sns import signed_text

FIXTURES = Path(__file__).parent / "fixtures" / "esp"
CERT_PATH = "/SimpleNotificationService-test.pem"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@dataclass
class AmazonServer:
    """A local stand-in for sns.<region>.amazonaws.com: serves the signing
    certificate and records every request (subscription confirmations)."""

    key: rsa.RSAPrivateKey
    base: str
    requests: list[str] = field(default_factory=list)

    @property
    def cert_url(self) -> str:
        return self.base + CERT_PATH

    def sign(self, message: dict[str, Any], *, version: str = "1") -> dict[str, Any]:
        signed = dict(message, SignatureVersion=version, SigningCertURL=self.cert_url)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(signed_text(signed), padding.PKCS1v15(), algorithm)
        return dict(signed, Signature=base64.b64encode(signature).decode())


def _self_signed(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@contextmanager
def amazon_server() -> Iterator[AmazonServer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = _self_signed(key)
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = pem if self.path == CERT_PATH else b"<ConfirmSubscriptionResponse/>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield AmazonServer(key=key, base=f"http://127.0.0.1:{server.server_address[1]}", requests=seen)
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class SendGridKey:
    """A Signed Event Webhook key pair: the public half as SendGrid shows it."""

    private: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> SendGridKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def public(self) -> str:
        der = self.private.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str = "1513299569") -> dict[str, str]:
        signature = self.private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp, "Content-Type": "application/json"}


def mailgun_signed(payload: dict[str, Any], key: str, *, token: str) -> bytes:
    """``payload`` with a fresh Mailgun signature for ``token`` (a sample
    without a signature block, or with a placeholder time, is stamped with
    its event's time, as Mailgun does)."""
    stamp = str(payload.get("signature", {}).get("timestamp", ""))
    if not stamp.isdigit():
        stamp = str(int(float(payload["event-data"]["timestamp"])))
    digest = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(dict(payload, signature={"timestamp": stamp, "token": token, "signature": digest})).encode()


def basic_auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
