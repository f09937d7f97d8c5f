"""Filters on the sender's roles; staff commands are refused to everyone else."""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.types import TelegramObject

from models import Account
from models.enums import Role
from services.accounts import role_scope


class HasRole(Filter):
    """Passes when the sender holds `role`; hands the handler `<role>_scope`."""

    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(self, event: TelegramObject, account: Account | None = None) -> Any:
        scope = role_scope(account, self.role)
        return False if scope is None else {f"{self.role}_scope": scope}


# The flows that belong to a staff role, by FSM state (group, or group:state).
FLOW_ROLES = {
    "RedeemFlow": Role.AGENT,
    "ReversalFlow": Role.ADMIN,
    "BroadcastFlow": Role.ADMIN,
    "RelayFlow:partner": Role.PARTNER,
}


def flow_role(raw_state: str | None) -> str | None:
    """The role the conversation state `raw_state` belongs to, None for everyone's flows."""
    if not raw_state:
        return None
    return FLOW_ROLES.get(raw_state) or FLOW_ROLES.get(raw_state.split(":")[0])


class LostRole(Filter):
    """Passes when the sender is in the middle of a flow of a role they no longer hold
    (removed, or moved to another e-Warong, while a step was open)."""

    async def __call__(
        self, event: TelegramObject, account: Account | None = None, raw_state: str | None = None
    ) -> bool:
        role = flow_role(raw_state)
        return role is not None and role_scope(account, role) is None
