"""Amazon SNS message signatures (how SES's notifications reach us).

An SNS message is signed by Amazon with the key of the certificate at its
``SigningCertURL``: RSA over the message's fields as ``name\\nvalue\\n`` lines
in a fixed order, SHA-1 for ``SignatureVersion`` 1 and SHA-256 for 2. The
certificate URL (and a subscription's ``SubscribeURL``) must match
``sns_url_pattern`` — Amazon's own ``https://sns.<region>.amazonaws.com/``
— or the message is refused before anything is fetched. Certificates are
fetched once and kept.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from typing import Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

#: The fields signed, in order, per message type (Amazon's documentation).
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
#: Seconds to wait for Amazon's certificate server.
FETCH_TIMEOUT_S = 10.0
#: Certificates kept (one per region and key rotation).
MAX_CERTIFICATES = 32

_certificates: dict[str, x509.Certificate] = {}
_lock = threading.Lock()


class Unverified(Exception):
    """The message is not signed by SNS (or cannot be checked): the reason."""


class Unreachable(Unverified):
    """The signing certificate could not be fetched: worth a retry."""


def signed_text(message: dict[str, Any]) -> bytes:
    fields = NOTIFICATION_FIELDS if message.get("Type") == "Notification" else SUBSCRIPTION_FIELDS
    lines = []
    for name in fields:
        if name in message and message[name] is not None:
            lines.append(f"{name}\n{message[name]}\n")
        elif name != "Subject":
            raise Unverified(f"the signed field '{name}' is missing")
    return "".join(lines).encode("utf-8")


def allowed(url: str, pattern: str) -> bool:
    return bool(re.match(pattern, url)) and "@" not in url.split("/")[2]


def certificate(url: str) -> x509.Certificate:
    with _lock:
        if url in _certificates:
            return _certificates[url]
    try:
        response = httpx.get(url, timeout=FETCH_TIMEOUT_S, follow_redirects=False)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise Unreachable(f"the signing certificate {url} could not be fetched ({exc})") from None
    try:
        cert = x509.load_pem_x509_certificate(response.content)
    except ValueError:
        raise Unverified(f"{url} is not a PEM certificate") from None
    with _lock:
        if len(_certificates) >= MAX_CERTIFICATES:
            _certificates.clear()
        _certificates[url] = cert
    return cert


def verify(message: dict[str, Any], *, url_pattern: str) -> None:
    """Raise Unverified unless ``message`` carries a valid SNS signature."""
    version = str(message.get("SignatureVersion", ""))
    algorithm = HASHES.get(version)
    if algorithm is None:
        raise Unverified(f"SignatureVersion '{version}' is not 1 or 2")
    url = str(message.get("SigningCertURL", ""))
    if not url.endswith(".pem") or not allowed(url, url_pattern):
        raise Unverified(f"SigningCertURL '{url[:200]}' is not an Amazon SNS certificate")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise Unverified("Signature is not base64") from None
    data = signed_text(message)
    key = certificate(url).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Unverified("the signing certificate has no RSA key")
    try:
        key.verify(signature, data, padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise Unverified("the signature does not match the message") from None
