"""FSM states of the conversations."""

from aiogram.fsm.state import State, StatesGroup


class LinkFlow(StatesGroup):
    phone = State()
    nik = State()
    birth_date = State()


class EraseFlow(StatesGroup):
    confirm = State()
