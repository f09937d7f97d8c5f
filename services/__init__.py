"""Use cases: plain async functions and classes over a database session; no aiogram here.

`Session` is the unit of work a handler receives from the session middleware and
passes on unopened: routers hold one without importing SQLAlchemy or touching the ORM.
"""

from sqlalchemy.ext.asyncio import AsyncSession as Session  # the unit of work a handler passes on

__all__ = ["Session"]
