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

from models.contacts import Contact
from resolvers import crypto, mail


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
    indexes = {crypto.member_index(m): m for m in member_ids}
    contacts = await Contact.filter(member_index__in=list(indexes))
    async with in_transaction("contacts"):
        for contact in contacts:
            await mail.enqueue(
                contact,
                crypto.decrypt(contact.email_ciphertext, "contact-email"),
                template,
                contact.language,
                bulk=bulk,
                **context(contact.language),
            )
    mail.wake_worker()
    return len(contacts)
