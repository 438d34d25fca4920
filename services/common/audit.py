"""The audit trail of staff actions: who, what, when, why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.context import request_id_var
from services.common.models import AuditEntry
from services.common.principal import Principal


def record_audit(
    session: AsyncSession,
    *,
    actor: Principal,
    action: str,
    target_type: str,
    target_id: str | None,
    at: datetime,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit row to the current transaction (no raw id numbers in details)."""
    entry = AuditEntry(
        at=at,
        actor=actor.actor_id,
        actor_kind=str(actor.kind),
        action=action,
        target_type=target_type,
        target_id=target_id,
        reason=reason,
        details=details,
        request_id=request_id_var.get(),
    )
    session.add(entry)
    return entry
