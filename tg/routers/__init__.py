"""aiogram Routers, one module per audience or flow; joined in `bot.factory`."""

from aiogram import Router


def all_routers() -> list[Router]:
    """Routers in the order they must be tried: cancel first, the catch-all last."""
    from tg.middlewares.answer import AnswerAfterHandler
    from tg.routers import (
        admin,
        agent,
        broadcast,
        common,
        fallback,
        kpm,
        kpm_shopping,
        napza,
        partner,
    )

    modules = (common, kpm, agent, kpm_shopping, partner, napza, broadcast, admin, fallback)
    routers = [module.create_router() for module in modules]
    for router in routers:  # every button press answered once, after its handler
        router.callback_query.middleware(AnswerAfterHandler())
    return routers
