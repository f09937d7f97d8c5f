"""aiogram Routers, one module per audience or flow; joined in `bot.factory`."""

from aiogram import Router


def all_routers() -> list[Router]:
    """Routers in the order they must be tried: cancel first, the catch-all last."""
    from handlers import common, fallback, kpm

    return [common.create_router(), kpm.create_router(), fallback.create_router()]
