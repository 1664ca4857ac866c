"""Email to members by pseudonymous id: the operator path for research mail.

Researchers never see who is emailed: the research code hands member ids to
this module, which finds each member's contact through the keyed index,
renders the template in the contact's language and queues it in the outbox
(bulk mail is throttled by the mail worker). Nothing here returns an address.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tortoise.transactions import in_transaction

from models.contacts import Contact, OutboxMessage
from resolvers import crypto, mail

CHUNK = 500


async def email_members(
    member_ids: list[int],
    template: str,
    context: Callable[[str], dict[str, Any]],
    bulk: bool = True,
) -> int:
    """Queue one message per member who has a contact; returns how many were queued.

    ``context(language)`` gives the template's variables in that language.
    """
    if not member_ids:
        return 0
    queued = 0
    for start in range(0, len(member_ids), CHUNK):
        indexes = [crypto.member_index(m) for m in member_ids[start : start + CHUNK]]
        contacts = await Contact.filter(member_index__in=indexes)
        rendered: dict[str, tuple[str, str]] = {}  # one rendering per language
        rows = []
        for contact in contacts:
            language = contact.language
            if language not in rendered:
                rendered[language] = mail.render(template, language, **context(language))
            subject, body = rendered[language]
            rows.append(
                mail.outbox_row(
                    contact,
                    crypto.decrypt(contact.email_ciphertext, "contact-email"),
                    template,
                    language,
                    subject,
                    body,
                    bulk,
                )
            )
        async with in_transaction("contacts"):
            await OutboxMessage.bulk_create(rows)
        queued += len(rows)
    mail.wake_worker()
    return queued
