"""Email: templates in fi/sv/en, the transactional outbox, and its delivery worker.

``enqueue`` writes a message into the contacts database inside the caller's
transaction, so a message exists exactly when the change that causes it
was committed. The :class:`MailWorker` (in-process by default, or the
``community mail-worker`` command for scale-out) claims due messages with a
conditional update, delivers them over SMTP (or into ``MAIL_DIR`` in the
embedded mode) and retries failures with exponential backoff: nothing is
lost while the SMTP server is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from config import Settings, get_settings
from models.contacts import Contact, OutboxMessage
from resolvers import clock, crypto

log = logging.getLogger("community.mail")

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates" / "mail"),
    undefined=StrictUndefined,
    autoescape=False,  # noqa: S701 - plain-text mail, never rendered as HTML
    keep_trailing_newline=True,
)
CLAIM_SECONDS = 120
_wakeup: asyncio.Event | None = None


def render(template: str, language: str, **context: Any) -> tuple[str, str]:
    """(subject, body) of a template in a language."""
    text = TEMPLATES.get_template(f"{language}/{template}.txt").render(**context)
    first, _, body = text.partition("\n")
    return first.removeprefix("Subject:").strip(), body


def link(path: str, **query: str) -> str:
    from urllib.parse import urlencode

    base = f"{get_settings().public_base_url}{path}"
    return f"{base}?{urlencode(query)}" if query else base


async def enqueue(
    contact: Contact | None,
    to_address: str,
    template: str,
    language: str,
    bulk: bool = False,
    **context: Any,
) -> OutboxMessage:
    """Add a message to the outbox (call inside the contacts transaction).

    ``bulk`` mail (study invitations, reminders) is throttled by the worker
    to MAIL_BULK_PER_MINUTE; transactional mail (links, notices) is not.
    """
    subject, body = render(template, language, **context)
    message = outbox_row(contact, to_address, template, language, subject, body, bulk)
    await message.save()
    return message


async def within_daily_cap(contact: Contact | None, template: str) -> bool:
    """May one more ``template`` message go to this contact today?

    For mail that anyone can cause to someone else's address (a reset link,
    an "already registered" notice, an address-change link): without a cap, a
    stranger could fill a member's inbox. Past MAIL_PER_ADDRESS_PER_DAY the
    message is not queued (nor its link issued); the caller answers exactly
    as if it were, so the cap tells nobody whether the address is a member's.
    Counted per calendar day (UTC), the only time the outbox keeps.
    """
    if contact is None:
        return True
    sent = await OutboxMessage.filter(
        contact_id=contact.id, template=template, created_at=clock.today()
    ).count()
    if sent < get_settings().mail_per_address_per_day:
        return True
    log.info("mail %s not queued: the address had its daily %s already", template, sent)
    return False


def outbox_row(
    contact: Contact | None,
    to_address: str,
    template: str,
    language: str,
    subject: str,
    body: str,
    bulk: bool,
) -> OutboxMessage:
    """An unsaved outbox message: recipient and body encrypted, times to the day."""
    return OutboxMessage(
        contact=contact,
        bulk=bulk,
        template=template,
        language=language,
        recipient_ciphertext=crypto.encrypt(to_address, "outbox-recipient"),
        subject=subject,
        body_ciphertext=crypto.encrypt(body, "outbox-body"),
        created_at=clock.today(),
        next_attempt_at=clock.now(),
    )


def wake_worker() -> None:
    """Tell the in-process worker that new mail is waiting (after a commit)."""
    if _wakeup is not None:
        _wakeup.set()


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(5 * 2 ** (attempts - 1), 3600))


class MailWorker:
    """Delivers due outbox messages; several workers may run side by side."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.bulk_sent: deque[float] = deque()  # monotonic times of this worker's bulk sends

    def _bulk_allowance(self) -> int:
        """Bulk messages this worker may still send in the current minute."""
        now = time.monotonic()
        while self.bulk_sent and now - self.bulk_sent[0] >= 60:
            self.bulk_sent.popleft()
        return max(0, self.settings.mail_bulk_per_minute - len(self.bulk_sent))

    async def run(self, stop: asyncio.Event) -> None:
        global _wakeup
        _wakeup = asyncio.Event()
        while not stop.is_set():
            try:
                await self.deliver_due()
            except Exception:  # the worker must outlive any one bad batch
                log.exception("mail worker batch failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.mail_poll_seconds):
                    await _wakeup.wait()
            _wakeup.clear()

    async def deliver_due(self, limit: int = 50) -> int:
        """Deliver what is due now; returns how many messages were sent."""
        now = clock.now()
        # A claim left by a crashed worker expires and the message is retried.
        await OutboxMessage.filter(status="sending", claimed_until__lt=now).update(status="pending")
        # Transactional mail first, then bulk mail as far as the throttle allows.
        due = list(
            await OutboxMessage.filter(status="pending", next_attempt_at__lte=now, bulk=False)
            .order_by("next_attempt_at")
            .limit(limit)
            .values_list("id", flat=True)
        )
        allowance = min(self._bulk_allowance(), limit)
        if allowance:
            due += list(
                await OutboxMessage.filter(status="pending", next_attempt_at__lte=now, bulk=True)
                .order_by("next_attempt_at")
                .limit(allowance)
                .values_list("id", flat=True)
            )
        sent = 0
        for message_id in due:
            # Each claim runs from its own start: a slow batch must not let
            # another worker take (and send again) what this one is sending.
            claimed = await OutboxMessage.filter(id=message_id, status="pending").update(
                status="sending", claimed_until=clock.now() + timedelta(seconds=CLAIM_SECONDS)
            )
            if claimed != 1:
                continue  # another worker took it
            message = await OutboxMessage.get(id=message_id)
            if message.bulk:
                self.bulk_sent.append(time.monotonic())
            try:
                await self._send(message)
            except Exception as exc:
                await self._failed(message, exc)
            else:
                message.status = "sent"
                # Kept to the day, like every time in the contacts register.
                message.sent_at = message.next_attempt_at = clock.today()
                message.claimed_until = None
                await message.save(
                    update_fields=["status", "sent_at", "next_attempt_at", "claimed_until"]
                )
                sent += 1
        return sent

    async def _failed(self, message: OutboxMessage, exc: Exception) -> None:
        message.attempts += 1
        # Only the error's type and SMTP code: server replies may quote the address.
        code = getattr(exc, "code", "")
        message.last_error = f"{type(exc).__name__} {code}".strip()[:300]
        message.claimed_until = None
        if message.attempts >= self.settings.mail_max_attempts:
            message.status = "failed"
        else:
            message.status = "pending"
            message.next_attempt_at = clock.now() + backoff(message.attempts)
        await message.save(
            update_fields=["attempts", "last_error", "claimed_until", "status", "next_attempt_at"]
        )
        log.warning(
            "mail %s not delivered (attempt %s): %s",
            message.id,
            message.attempts,
            message.last_error,
        )

    def _build(self, message: OutboxMessage, transfer_encoding: str) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.settings.mail_from
        email["To"] = crypto.decrypt(message.recipient_ciphertext, "outbox-recipient")
        email["Subject"] = message.subject
        email["Message-ID"] = make_msgid(idstring=f"outbox-{message.id}")
        email["X-Community-Template"] = message.template
        email.set_content(
            crypto.decrypt(message.body_ciphertext, "outbox-body"), cte=transfer_encoding
        )
        # After set_content, which drops every Content-* header set before it.
        email["Content-Language"] = message.language
        return email

    async def _send(self, message: OutboxMessage) -> None:
        settings = self.settings
        # Files are read by people (links must be copyable): 8bit text there;
        # quoted-printable over SMTP, which any server accepts.
        email = self._build(message, "quoted-printable" if settings.smtp_host else "8bit")
        if not settings.smtp_host:
            path = Path(settings.mail_dir) / f"{message.id}-{message.template}.eml"
            await asyncio.to_thread(_write_file, path, bytes(email))
            return
        await aiosmtplib.send(
            email,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=settings.smtp_password or None,
            start_tls=settings.smtp_starttls,
            use_tls=settings.smtp_use_tls,
            timeout=15,
        )


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def outbox_counts() -> dict[str, int]:
    """Messages not yet delivered, by state (for the metrics): two small counts."""
    return {
        "pending": await OutboxMessage.filter(status="pending").count(),
        "failed": await OutboxMessage.filter(status="failed").count(),
    }


async def outbox_status(failed_limit: int = 50) -> tuple[dict[str, int], list[OutboxMessage]]:
    """Counts by status, and the newest failed messages (for admins: no address, no body)."""
    counts = dict.fromkeys(("pending", "sending", "sent", "failed"), 0)
    for status in counts:
        counts[status] = await OutboxMessage.filter(status=status).count()
    counts["bulk_pending"] = await OutboxMessage.filter(status="pending", bulk=True).count()
    failed = await OutboxMessage.filter(status="failed").order_by("-created_at").limit(failed_limit)
    return counts, failed


async def retry_failed(message_id: str) -> bool:
    """Put a failed message back in the queue (an admin's decision after a fix)."""
    updated = await OutboxMessage.filter(id=message_id, status="failed").update(
        status="pending", attempts=0, next_attempt_at=clock.now()
    )
    if updated:
        wake_worker()
    return bool(updated)
