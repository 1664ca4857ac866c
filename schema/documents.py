"""Persisted (trusted) documents: the operations the mobile apps ship with, by id.

A client sends ``{"documentId": "sha256:<hex>", "variables": ...}`` instead
of the query text (Apollo's ``extensions.persistedQuery.sha256Hash`` is
understood too). The registered documents are the ``*.graphql`` files in
``schema/documents/`` (or ``DOCUMENTS_DIR``); a document's id is the SHA-256
of its file's bytes, so an app build and the server agree without a
registry service. ``community documents`` lists the ids.

With ``TRUSTED_DOCUMENTS_ONLY=true`` (meant for production), anonymous and
member clients may run registered documents only; staff (moderators,
researchers, admins) may still send text for their tools.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

BUNDLED = Path(__file__).parent / "documents"


def document_id(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return "sha256:" + hashlib.sha256(data).hexdigest()


class DocumentStore:
    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory else BUNDLED
        self.documents: dict[str, str] = {}
        self.names: dict[str, str] = {}
        if self.directory.is_dir():
            for path in sorted(self.directory.glob("*.graphql")):
                data = path.read_bytes()
                key = document_id(data)
                self.documents[key] = data.decode()
                self.names[key] = path.stem

    def get(self, key: str) -> str | None:
        if not key.startswith("sha256:"):
            key = "sha256:" + key  # a bare hash, as Apollo's clients send it
        return self.documents.get(key.lower())


def requested_document_id(data: dict[str, Any]) -> str | None:
    """The document id a request names, if any (``documentId`` or Apollo's extension)."""
    key = data.get("documentId")
    if key is None:
        extensions = data.get("extensions")
        if isinstance(extensions, dict):
            persisted = extensions.get("persistedQuery")
            if isinstance(persisted, dict):
                key = persisted.get("sha256Hash")
    if key is None:
        return None
    return key if isinstance(key, str) else ""
