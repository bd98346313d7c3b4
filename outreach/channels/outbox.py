"""The file outbox: the embedded default for both channels.

Nothing leaves the machine. Email becomes one ``.eml`` file per message under
``{outbox_dir}/email/`` (open it in any mail client); SMS becomes one JSON
line per message in ``{outbox_dir}/sms.jsonl``. Both are idempotent: handing
the same message over twice leaves one copy and returns the same provider id,
so a broker's duplicate delivery or a retry after a crash never doubles a send.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from datetime import UTC, datetime
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

from outreach.channels.base import Envelope
from outreach.channels.mime import build, message_id_for, sender_domain
from outreach.channels.sms import E164_HINT, is_e164, sms_encoding, sms_segments
from outreach.config import Settings
from outreach.errors import ChannelError, PermanentChannelError

#: Subfolder of outbox_dir holding one .eml file per email.
EMAIL_DIR = "email"
#: File under outbox_dir holding one JSON line per SMS.
SMS_FILE = "sms.jsonl"
#: Bytes read at a time when catching up with lines other writers appended.
_READ_CHUNK = 1 << 20


class OutboxEmail:
    """Email as ``{outbox_dir}/email/{message_id}.eml``; provider id = Message-ID."""

    name = "outbox-email"
    channel = "email"

    def __init__(self, *, directory: Path, from_address: str) -> None:
        self.directory = Path(directory)
        self.from_address = from_address
        self._made = False

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxEmail:
        return cls(directory=Path(settings.outbox_dir) / EMAIL_DIR, from_address=settings.from_address)

    def path_for(self, envelope: Envelope) -> Path:
        return self.directory / f"{envelope.message_id}.eml"

    def deliver(self, envelope: Envelope) -> str:
        path = self.path_for(envelope)
        if path.exists():
            return _message_id_of(path) or message_id_for(
                envelope, domain=sender_domain(envelope, from_address=self.from_address)
            )
        built = build(envelope, from_address=self.from_address)
        try:
            if not self._made:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._made = True
            _write_atomically(path, built.data)
        except OSError as exc:
            raise ChannelError(f"cannot write email outbox file {path}: {exc}") from None
        return built.message_id


def _message_id_of(path: Path) -> str | None:
    """The Message-ID of an .eml already in the outbox."""
    try:
        with path.open("rb") as handle:
            headers = BytesHeaderParser(policy=policy.default).parse(handle)
    except OSError as exc:
        raise ChannelError(f"cannot read email outbox file {path}: {exc}") from None
    value = headers["Message-ID"]
    return str(value) if value else None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a hidden temp file beside ``path`` (named for this process
    and thread, so no two writers share one), then rename it into place, so
    a reader never sees half a message."""
    temp = f"{path.parent}/.{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class _SmsLedger:
    """The idempotency keys already in one sms.jsonl.

    Loaded from the file once, then kept current by reading only the lines
    other threads or processes appended since (under the file lock), so a
    send costs O(new lines), not O(file).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: set[str] = set()
        self.offset = 0  # bytes of the file already read, always at a line end
        self.identity: tuple[int, int] | None = None  # (device, inode) read

    def catch_up(self, fd: int) -> None:
        stat = os.fstat(fd)
        identity = (stat.st_dev, stat.st_ino)
        if identity != self.identity or stat.st_size < self.offset:
            # First look, or the file was replaced or truncated: read it anew.
            self.keys.clear()
            self.offset, self.identity = 0, identity
        pending = b""
        while self.offset + len(pending) < stat.st_size:
            chunk = os.pread(fd, _READ_CHUNK, self.offset + len(pending))
            if not chunk:
                break
            pending += chunk
            end = pending.rfind(b"\n") + 1
            for line in pending[:end].splitlines():
                self._remember(line)
            self.offset += end
            pending = pending[end:]

    def _remember(self, line: bytes) -> None:
        try:
            key = json.loads(line).get("idempotency_key")
        except (ValueError, AttributeError):
            return  # a line a crashed writer left half-written
        if isinstance(key, str):
            self.keys.add(key)


_ledgers: dict[Path, _SmsLedger] = {}
_ledgers_lock = threading.Lock()


def _ledger(path: Path) -> _SmsLedger:
    with _ledgers_lock:
        return _ledgers.setdefault(path, _SmsLedger())


def _forget_ledgers() -> None:
    """A forked child starts with fresh ledgers and unheld locks."""
    global _ledgers_lock
    _ledgers.clear()
    _ledgers_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_ledgers)


class OutboxSms:
    """SMS as JSON lines in ``{outbox_dir}/sms.jsonl``, one per message."""

    name = "outbox-sms"
    channel = "sms"

    def __init__(self, *, path: Path, from_number: str | None) -> None:
        self.path = Path(path).absolute()
        self.from_number = from_number

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxSms:
        return cls(path=Path(settings.outbox_dir) / SMS_FILE, from_number=settings.twilio_from)

    @staticmethod
    def provider_id(envelope: Envelope) -> str:
        return f"outbox:{envelope.idempotency_key}"

    def deliver(self, envelope: Envelope) -> str:
        if not is_e164(envelope.to):
            # As Twilio would (error 21211): the demo shows what production will.
            raise PermanentChannelError(
                f"message {envelope.message_id}: '{envelope.to}' is not a phone number "
                f"in E.164 form (hint: {E164_HINT})"
            )
        provider_id = self.provider_id(envelope)
        record = {
            "message_id": envelope.message_id,
            "to": envelope.to,
            "from": envelope.from_address or self.from_number,
            "body": envelope.text,
            "segments": sms_segments(envelope.text),
            "encoding": sms_encoding(envelope.text),
            "idempotency_key": envelope.idempotency_key,
            "provider_id": provider_id,
            "sent_at": (envelope.sent_at.replace(tzinfo=UTC) if envelope.sent_at else datetime.now(UTC))
            .isoformat(timespec="seconds"),
        }
        line = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
        ledger = _ledger(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with ledger.lock:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd closes
                    ledger.catch_up(fd)
                    if envelope.idempotency_key in ledger.keys:
                        return provider_id
                    if os.fstat(fd).st_size > ledger.offset:
                        line = b"\n" + line  # end a line a crashed writer left open
                    _write_all(fd, line)
                    ledger.offset = os.fstat(fd).st_size
                    ledger.keys.add(envelope.idempotency_key)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise ChannelError(f"cannot append to SMS outbox {self.path}: {exc}") from None
        return provider_id


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
