"""The email outbox: messages are written with the change that causes them and
delivered by a worker over real SMTP (aiosmtpd), with retries and backoff;
the embedded mode writes .eml files; templates come in fi, sv and en."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from tortoise.transactions import in_transaction

from config import get_settings, load_settings, override_settings
from models.community import Member
from models.contacts import Contact, OutboxMessage
from resolvers import clock, mail
from resolvers.mail import MailWorker, backoff, render
from tests import dbtools
from tests.conftest import Server, free_port
from tests.helpers import PASSWORD, REGISTER, current_rules_id, register, unique
from tests.smtp import body_of, token_in

TEMPLATES = (
    "verify",
    "already_registered",
    "reset_password",
    "change_email",
    "email_change_notice",
)
LANGUAGES = ("fi", "sv", "en")
CONTEXT: dict[str, Any] = {
    "display_name": "Kahvikuppi",
    "hours": 48,
    "minutes": 60,
    "link": "https://community.test/some-link?token=abc123",
    "login_link": "https://community.test/login",
    "reset_link": "https://community.test/reset-password",
}

_ORIGINAL_DELIVER_DUE = MailWorker.deliver_due


class TestWorker(MailWorker):
    """A worker the test drives; it keeps working while the in-process one is paused."""

    __test__ = False  # not a pytest test class

    async def deliver_due(self, limit: int = 50) -> int:
        return await _ORIGINAL_DELIVER_DUE(self, limit)


@pytest_asyncio.fixture(loop_scope="session")
async def paused_worker(server: Server, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """Pause the server's in-process worker so that only the test's workers deliver."""
    idle = asyncio.Event()

    async def paused(self: MailWorker, limit: int = 50) -> int:
        idle.set()
        return 0

    monkeypatch.setattr(MailWorker, "deliver_due", paused)
    mail.wake_worker()
    # Once the in-process loop has called the paused method, no batch of it is running.
    await asyncio.wait_for(idle.wait(), timeout=5)
    yield


async def poll(
    check: Callable[[], Awaitable[bool]], timeout: float = 10, what: str = "condition"
) -> None:
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def only_row() -> OutboxMessage:
    rows = await OutboxMessage.all()
    assert len(rows) == 1, [(r.id, r.template, r.status) for r in rows]
    return rows[0]


async def enqueue_direct(address: str, template: str = "already_registered") -> OutboxMessage:
    async with in_transaction("contacts"):
        return await mail.enqueue(None, address, template, "en", **CONTEXT)


def closed_port() -> int:
    """A local port nobody listens on."""
    return free_port()


# --- registration writes the outbox row in its transaction ------------------------------------


async def test_registration_writes_one_encrypted_outbox_row_and_delivers_it(
    server: Server,
) -> None:
    email = f"{unique('outbox')}@example.com"
    display = unique("Mustikka ")
    result = await register(server, email=email, displayName=display, language="EN")
    assert result == {"__typename": "RegisterSuccess", "emailSent": True}

    delivered = await server.smtp.wait_for(email, "verify")
    token = token_in(delivered)

    async def is_sent() -> bool:
        return (await only_row()).status == "sent"

    await poll(is_sent, what="outbox row to become sent")
    row = await only_row()
    assert row.template == "verify"
    assert row.language == "en"
    assert row.sent_at is not None
    assert row.claimed_until is None
    assert row.attempts == 0
    assert row.last_error == ""
    contact = await Contact.get(id=row.contact_id)  # type: ignore[attr-defined]
    assert contact.language == row.language
    assert delivered["Subject"] == row.subject == render("verify", "en", **CONTEXT)[0]

    # Recipient and body are encrypted at rest: no address, token, link or pseudonym in clear.
    stored = "\n".join(await dbtools.text_values("contacts"))
    assert email not in stored
    assert email.split("@")[0] not in stored
    assert token not in stored
    assert "/verify-email" not in stored
    assert display not in stored
    body = body_of(delivered)
    assert display in body
    assert f"https://community.test/verify-email?token={token}" in body

    # Delivered exactly once, even after a few more worker cycles.
    await asyncio.sleep(0.5)
    assert len(server.smtp.sent_to(email)) == 1
    assert await dbtools.count("contacts", "outbox_message") == 1


async def test_failed_registration_writes_no_outbox_row(server: Server) -> None:
    email = f"{unique('weak')}@example.com"
    result = await register(server, email=email, password="short")
    assert result["__typename"] == "InputError", result
    assert result["code"] == "PASSWORD_TOO_SHORT"
    assert result["field"] == "password"

    taken = await register(server, email=f"{unique('first')}@example.com", loginName="takenname")
    assert taken["__typename"] == "RegisterSuccess", taken
    again = await register(server, email=email, loginName="takenname")
    assert again["__typename"] == "InputError", again
    assert again["code"] == "NAME_TAKEN"

    rows = await OutboxMessage.all()
    assert [r.template for r in rows] == ["verify"]  # only the successful registration's
    assert await Contact.all().count() == 1
    await asyncio.sleep(0.3)
    assert server.smtp.sent_to(email) == []


async def test_outbox_row_rolls_back_with_the_registration(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_enqueue = mail.enqueue

    async def enqueue_then_fail(*args: Any, **kwargs: Any) -> OutboxMessage:
        await real_enqueue(*args, **kwargs)
        raise RuntimeError("simulated failure after the outbox write")

    monkeypatch.setattr(mail, "enqueue", enqueue_then_fail)
    email = f"{unique('rollback')}@example.com"
    data = {
        "email": email,
        "birthDate": "1990-05-17",
        "language": "FI",
        "loginName": unique("rollback"),
        "displayName": unique("Rollback "),
        "password": PASSWORD,
        "rulesVersionId": await current_rules_id(server),
    }
    body = await server.gql(REGISTER, {"input": data})
    assert body.get("errors"), body
    assert await dbtools.count("contacts", "outbox_message") == 0
    assert await Contact.all().count() == 0
    assert await Member.all().count() == 0
    await asyncio.sleep(0.3)
    assert server.smtp.sent_to(email) == []


# --- SMTP outages, retries and backoff ---------------------------------------------------------


async def test_smtp_down_registration_succeeds_and_mail_is_delivered_later(
    server: Server,
) -> None:
    email = f"{unique('outage')}@example.com"
    port = server.smtp.port
    server.smtp.stop()
    try:
        result = await register(server, email=email)
        assert result["__typename"] == "RegisterSuccess", result

        async def attempted() -> bool:
            return (await only_row()).attempts >= 1

        await poll(attempted, what="a failed delivery attempt")
        # Backoff: no new attempt in the next worker cycles.
        await asyncio.sleep(0.6)
        row = await only_row()
        assert row.status == "pending"
        assert row.attempts == 1
        assert row.sent_at is None
        assert row.claimed_until is None
        assert row.next_attempt_at > clock.now()
        assert row.next_attempt_at >= clock.now() + backoff(1) - timedelta(seconds=2)
        assert row.last_error != ""
        assert "@" not in row.last_error
        assert email not in row.last_error
        assert server.smtp.sent_to(email) == []
    finally:
        server.smtp.start(port)
    assert server.smtp.port == port

    # The SMTP server is back, but the message is not due yet.
    assert await TestWorker(server.settings).deliver_due() == 0
    assert server.smtp.sent_to(email) == []

    clock.move(backoff(1) + timedelta(seconds=1))
    await TestWorker(server.settings).deliver_due()  # races with the in-process worker
    message = await server.smtp.wait_for(email, "verify")
    token_in(message)

    async def is_sent() -> bool:
        return (await only_row()).status == "sent"

    await poll(is_sent, what="the row to become sent")
    await asyncio.sleep(0.5)
    assert len(server.smtp.sent_to(email)) == 1
    row = await only_row()
    assert row.sent_at is not None
    assert row.attempts == 1


async def test_message_fails_after_max_attempts_and_is_not_retried(
    server: Server, paused_worker: None
) -> None:
    bad = replace(server.settings, mail_max_attempts=2, smtp_port=closed_port())
    override_settings(bad)
    email = f"{unique('unreachable')}@example.com"
    result = await register(server, email=email)
    assert result["__typename"] == "RegisterSuccess", result
    worker = TestWorker(bad)

    assert await worker.deliver_due() == 0
    row = await only_row()
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at > clock.now()
    assert "@" not in row.last_error and row.last_error

    # Not due yet: nothing happens.
    assert await worker.deliver_due() == 0
    assert (await only_row()).attempts == 1

    clock.move(backoff(1) + timedelta(seconds=1))
    assert await worker.deliver_due() == 0
    row = await only_row()
    assert (row.status, row.attempts) == ("failed", 2)
    assert row.sent_at is None
    assert row.claimed_until is None
    assert "@" not in row.last_error

    # A failed message is never retried, even by a worker that could deliver it.
    clock.move(timedelta(days=2))
    assert await worker.deliver_due() == 0
    assert await TestWorker(server.settings).deliver_due() == 0
    row = await only_row()
    assert (row.status, row.attempts) == ("failed", 2)
    assert server.smtp.sent_to(email) == []


async def test_concurrent_workers_send_each_message_once(
    server: Server, paused_worker: None
) -> None:
    addresses = [f"{unique('concurrent')}@example.com" for _ in range(8)]
    for address in addresses:
        await enqueue_direct(address)
    assert await OutboxMessage.filter(status="pending").count() == len(addresses)

    first, second = await asyncio.gather(
        TestWorker(server.settings).deliver_due(), TestWorker(server.settings).deliver_due()
    )
    assert first + second == len(addresses)
    assert await OutboxMessage.filter(status="sent").count() == len(addresses)
    for address in addresses:
        assert len(server.smtp.sent_to(address, "already_registered")) == 1, address
    assert len(server.smtp.messages) == len(addresses)
    # Nothing is left to deliver.
    assert await TestWorker(server.settings).deliver_due() == 0
    assert len(server.smtp.messages) == len(addresses)


async def test_stale_claim_of_crashed_worker_is_retried(
    server: Server, paused_worker: None
) -> None:
    stale_to = f"{unique('stale')}@example.com"
    live_to = f"{unique('live')}@example.com"
    stale = await enqueue_direct(stale_to)
    live = await enqueue_direct(live_to)
    now = clock.now()
    await OutboxMessage.filter(id=stale.id).update(
        status="sending", claimed_until=now - timedelta(minutes=1)
    )
    await OutboxMessage.filter(id=live.id).update(
        status="sending", claimed_until=now + timedelta(minutes=1)
    )

    assert await TestWorker(server.settings).deliver_due() == 1
    assert len(server.smtp.sent_to(stale_to)) == 1
    assert server.smtp.sent_to(live_to) == []
    stale_row = await OutboxMessage.get(id=stale.id)
    assert stale_row.status == "sent" and stale_row.sent_at is not None
    live_row = await OutboxMessage.get(id=live.id)
    assert live_row.status == "sending" and live_row.sent_at is None

    # Once the live claim expires too, it is retried; the sent one is not sent again.
    clock.move(timedelta(minutes=2))
    assert await TestWorker(server.settings).deliver_due() == 1
    assert len(server.smtp.sent_to(live_to)) == 1
    assert len(server.smtp.sent_to(stale_to)) == 1
    assert (await OutboxMessage.get(id=live.id)).status == "sent"


# --- embedded mode: a local folder -------------------------------------------------------------


async def test_embedded_default_writes_eml_files(
    server: Server, paused_worker: None, tmp_path: Path
) -> None:
    defaults = load_settings({})
    assert defaults.smtp_host == ""
    assert defaults.mail_dir

    folder_settings = replace(server.settings, smtp_host="", mail_dir=str(tmp_path / "mail"))
    override_settings(folder_settings)
    email = f"{unique('folder')}@example.com"
    result = await register(server, email=email, language="SV")
    assert result["__typename"] == "RegisterSuccess", result
    row = await only_row()

    assert await TestWorker(get_settings()).deliver_due() == 1
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 1, files
    assert re.fullmatch(rf"0*{row.id}-verify\.eml", files[0].name), files[0].name
    parsed = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["To"] == email
    assert parsed["Subject"] == render("verify", "sv", **CONTEXT)[0]
    assert parsed["X-Community-Template"] == "verify"
    assert "/verify-email?token=" in body_of(parsed)
    row = await only_row()
    assert row.status == "sent" and row.sent_at is not None
    assert server.smtp.messages == []


# --- templates and languages -------------------------------------------------------------------


@pytest.mark.parametrize("template", TEMPLATES)
async def test_templates_render_in_three_languages(template: str) -> None:
    subjects: dict[str, str] = {}
    for language in LANGUAGES:
        subject, body = render(template, language, **CONTEXT)
        assert subject.strip(), (template, language)
        assert "Subject" not in subject and "\n" not in subject
        assert body.strip(), (template, language)
        assert not body.startswith("Subject:")
        assert "{{" not in body and "{{" not in subject
        subjects[language] = subject
    assert len(set(subjects.values())) == len(LANGUAGES), subjects


@pytest.mark.parametrize(
    ("language", "expected"),
    [("SV", "Bekräfta din e-postadress"), ("EN", "Confirm your email address")],
)
async def test_verify_mail_is_in_the_members_language(
    server: Server, language: str, expected: str
) -> None:
    email = f"{unique('lang')}@example.com"
    result = await register(server, email=email, language=language)
    assert result["__typename"] == "RegisterSuccess", result
    message = await server.smtp.wait_for(email, "verify")
    assert message["Subject"] == expected
    assert message["Subject"] == render("verify", language.lower(), **CONTEXT)[0]
    assert message["Content-Language"] == language.lower(), "Content-Language header missing"
    others = {render("verify", lang, **CONTEXT)[0] for lang in LANGUAGES} - {expected}
    assert message["Subject"] not in others


def test_backoff_grows_exponentially_and_is_capped() -> None:
    assert backoff(1) == timedelta(seconds=5)
    assert backoff(2) == timedelta(seconds=10)
    assert backoff(3) == timedelta(seconds=20)
    previous = timedelta(0)
    for attempts in range(1, 40):
        delay = backoff(attempts)
        assert delay >= previous
        assert delay <= timedelta(hours=1)
        if previous and delay < timedelta(hours=1):
            assert delay == 2 * previous
        previous = delay
    assert backoff(12) == timedelta(hours=1)
    assert backoff(1000) == timedelta(hours=1)
