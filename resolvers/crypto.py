"""Keyed cryptography of the privacy model.

- Email addresses (and outbox contents) are encrypted with AES-256-GCM under
  ``CONTACTS_ENCRYPTION_KEY``; the table name is bound as associated data so
  a ciphertext cannot be moved to another column.
- A keyed blind index (HMAC-SHA-256 under ``CONTACTS_INDEX_KEY``) of the
  normalised address gives look-up and uniqueness without decrypting.
- The contact-to-member link is sealed under ``LINK_KEY``: the contact row
  holds HMAC(member id) for look-up and an AES-GCM seal of the member id for
  the reverse direction. The community register holds nothing of the contact.
  Without the keys, neither database nor both together link a person to a
  pseudonym (the ENISA keyed-hash pseudonymisation technique).
- Opaque tokens (sessions, email links) are 256-bit random values; only their
  SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from config import get_settings

NONCE_BYTES = 12


def _aead_key(raw: bytes, label: bytes) -> bytes:
    # Derive a 256-bit subkey per purpose so one configured key never serves two jobs.
    return hmac.new(raw, b"community-aead:" + label, hashlib.sha256).digest()


def encrypt(plaintext: str, purpose: str) -> bytes:
    key = _aead_key(get_settings().contacts_encryption_key, purpose.encode())
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext.encode(), purpose.encode())


def decrypt(ciphertext: bytes, purpose: str) -> str:
    key = _aead_key(get_settings().contacts_encryption_key, purpose.encode())
    nonce, body = bytes(ciphertext[:NONCE_BYTES]), bytes(ciphertext[NONCE_BYTES:])
    return AESGCM(key).decrypt(nonce, body, purpose.encode()).decode()


def email_index(normalised_email: str) -> str:
    """The keyed blind index of an address (already normalised, lower case)."""
    key = get_settings().contacts_index_key
    return hmac.new(key, b"email:" + normalised_email.encode(), hashlib.sha256).hexdigest()


def member_index(member_id: int) -> str:
    """The keyed hash under which a contact row refers to its member."""
    key = get_settings().link_key
    return hmac.new(key, f"member:{member_id}".encode(), hashlib.sha256).hexdigest()


def seal_member(member_id: int) -> bytes:
    key = _aead_key(get_settings().link_key, b"member-seal")
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, str(member_id).encode(), b"member-seal")


def unseal_member(seal: bytes) -> int:
    key = _aead_key(get_settings().link_key, b"member-seal")
    nonce, body = bytes(seal[:NONCE_BYTES]), bytes(seal[NONCE_BYTES:])
    return int(AESGCM(key).decrypt(nonce, body, b"member-seal").decode())


def throttle_key(kind: str, value: str) -> str:
    """Keyed hash of an account or client address for the login throttle.

    Addresses are personal data, so only this hash is stored.
    """
    key = get_settings().token_key
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def new_token() -> str:
    """A fresh opaque 256-bit token, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
