"""What the tests' local SMS provider servers share: a threaded HTTP server
on loopback, the approved templates and signs of an account, failures to
inject, and every request and accepted message recorded.

Each provider's module (``aliyun_server``, ``tencent_server``) verifies its
provider's request signature as the provider documents it, independently of
the SDK that signed it, so a request the real API would refuse is refused.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
#: Seconds between the server loop's checks for shutdown (stdlib default: 0.5).
SHUTDOWN_POLL = 0.02
#: How far a request's signed time may be from the server's clock (both providers: 5 minutes; Aliyun 15).
CLOCK_SKEW_S = 300


@dataclass
class Accepted:
    """One message the provider took: what the customer will read, and how it was asked for."""

    phone: str
    sign_name: str
    code: str
    params: dict[str, str]
    text: str  # 【sign】 + the approved text filled with the parameters
    provider_id: str
    context: str | None  # OutId / SessionContext


@dataclass
class ProviderState:
    """An account at the provider: credentials, approved signs and templates
    (code → approved text), numbers to refuse, failures to inject."""

    key_id: str
    key_secret: str
    signs: set[str]
    templates: dict[str, str]
    app_id: str | None = None  # Tencent's SmsSdkAppId
    invalid: set[str] = field(default_factory=set)
    opted_out: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[Accepted] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    _failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, count: int, code: str) -> None:
        """The next ``count`` signed requests are answered with the provider's error ``code``."""
        with self.lock:
            self._failures.extend([code] * count)

    def take_failure(self) -> str | None:
        with self.lock:
            return self._failures.pop(0) if self._failures else None

    def accept(self, message: Accepted) -> None:
        with self.lock:
            self.accepted.append(message)


class JsonHandler(BaseHTTPRequestHandler):
    server: ProviderHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))


class ProviderHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ProviderState, handler: type[JsonHandler]) -> None:
        super().__init__((LOOPBACK, 0), handler)
        self.state = state


@dataclass
class ProviderServer:
    url: str
    state: ProviderState


@contextmanager
def serving(state: ProviderState, handler: type[JsonHandler], name: str) -> Iterator[ProviderServer]:
    """Serve ``handler`` on 127.0.0.1 for the ``with`` block."""
    server = ProviderHTTPServer(state, handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL},
                              name=name, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield ProviderServer(url=f"http://{host}:{port}", state=state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fill(text: str, values: dict[str, str], pattern: str) -> str:
    """The approved text with its variables (``pattern`` captures a name) replaced."""
    return re.sub(pattern, lambda m: values.get(m.group(1), m.group(0)), text)

