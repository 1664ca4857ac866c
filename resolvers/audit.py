"""The append-only audit log of staff actions."""

from __future__ import annotations

from typing import Any

from models.community import AuditEntry, Member


async def record(
    actor: Member | None,
    action: str,
    target_member_id: int | None = None,
    reason: str = "",
    **details: Any,
) -> AuditEntry:
    """Write one audit entry. Refers to people by pseudonymous member id only."""
    return await AuditEntry.create(
        actor_id=actor.id if actor else None,
        actor_role=actor.role.value if actor else "system",
        action=action,
        target_member_id=target_member_id,
        reason=reason,
        details=details,
    )
