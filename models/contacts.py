"""The contacts register: operator-only member data.

Email addresses are stored encrypted with a keyed blind index for look-up;
the member a contact belongs to is stored only as a keyed hash and an
encrypted, authenticated seal (see ``resolvers.crypto``), never as a plain id.
"""

from __future__ import annotations

import uuid

from tortoise import fields
from tortoise.models import Model


class Contact(Model):
    """One person's contact record.

    Ids are random and times are kept to the day: sequential ids or exact
    times would line up with the community register's and link a person to
    a pseudonym without the keys.
    """

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    email_ciphertext = fields.BinaryField()
    email_index = fields.CharField(max_length=64, unique=True)
    # Only the birth year is kept: the 16-year check is made on the full date
    # at registration, and the year is enough for coarse age bands.
    birth_year = fields.IntField()
    language = fields.CharField(max_length=2)
    member_index = fields.CharField(max_length=64, unique=True)
    member_seal = fields.BinaryField()
    verified_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()  # midnight of the day (clock.today)

    class Meta:
        table = "contact"


class Consent(Model):
    """A consent or acknowledgement the person gave (or withdrew)."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "contacts.Contact", related_name="consents", on_delete=fields.CASCADE
    )
    kind = fields.CharField(max_length=32)
    version = fields.CharField(max_length=32, default="")
    given_at = fields.DatetimeField()  # midnight of the day
    withdrawn_at = fields.DatetimeField(null=True)

    class Meta:
        table = "consent"


class EmailToken(Model):
    """A single-use, expiring link token sent by email. Only its hash is stored."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "contacts.Contact", related_name="tokens", on_delete=fields.CASCADE
    )
    purpose = fields.CharField(max_length=16)  # verify, reset, change_email
    token_hash = fields.CharField(max_length=64, unique=True)
    new_email_ciphertext = fields.BinaryField(null=True)
    new_email_index = fields.CharField(max_length=64, null=True)
    created_at = fields.DatetimeField()  # midnight of the day
    expires_at = fields.DatetimeField()  # a full hour
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "email_token"


class OutboxMessage(Model):
    """An email waiting for (or done with) delivery: the transactional outbox.

    Written in the same transaction as the change that causes it and
    delivered by the mail worker with retries. Recipient and body are encrypted.
    """

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    contact: fields.ForeignKeyNullableRelation[Contact] = fields.ForeignKeyField(
        "contacts.Contact", related_name="outbox", on_delete=fields.CASCADE, null=True
    )
    template = fields.CharField(max_length=32)
    language = fields.CharField(max_length=2)
    recipient_ciphertext = fields.BinaryField()
    subject = fields.CharField(max_length=200)
    body_ciphertext = fields.BinaryField()
    status = fields.CharField(max_length=16, default="pending", db_index=True)
    # Bulk mail (study invitations, reminders) is throttled; transactional mail is not.
    bulk = fields.BooleanField(default=False, db_default=False)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    claimed_until = fields.DatetimeField(null=True)
    last_error = fields.CharField(max_length=300, default="")
    created_at = fields.DatetimeField()  # midnight of the day
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox_message"


class BannedAddress(Model):
    """The keyed blind index of a banned member's email, kept for the legal-hold period.

    Registering that address again is refused until ``hold_until``; the
    lifecycle purge deletes the row (and the banned member's contact) then.
    Only the index is kept: the address itself cannot be read back from it.
    """

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    email_index = fields.CharField(max_length=64, unique=True)
    member_index = fields.CharField(max_length=64, unique=True)
    banned_at = fields.DatetimeField()  # midnight of the day
    hold_until = fields.DatetimeField()  # midnight of the day

    class Meta:
        table = "banned_address"
