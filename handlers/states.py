"""FSM states of the conversations."""

from aiogram.fsm.state import State, StatesGroup


class LinkFlow(StatesGroup):
    phone = State()
    nik = State()
    birth_date = State()


class EraseFlow(StatesGroup):
    confirm = State()


class RedeemFlow(StatesGroup):
    identify = State()
    basket = State()
    item_amount = State()
    total_amount = State()
    summary = State()


class NearbyFlow(StatesGroup):
    location = State()


class ReversalFlow(StatesGroup):
    reason = State()
