"""Filters on the sender's roles; staff commands are refused to everyone else."""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.types import TelegramObject

from models import Account


def role_scope(account: Account | None, role: str) -> str | None:
    """The scope of the account's `role` (e-Warong code, region prefix…), None if it has none."""
    if account is None:
        return None
    for granted in account.roles:
        if granted.role == role:
            return granted.scope or ""
    return None


class HasRole(Filter):
    """Passes when the sender holds `role`; hands the handler `<role>_scope`."""

    def __init__(self, role: str) -> None:
        self.role = role

    async def __call__(self, event: TelegramObject, account: Account | None = None) -> Any:
        scope = role_scope(account, self.role)
        return False if scope is None else {f"{self.role}_scope": scope}
