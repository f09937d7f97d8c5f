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


class NapzaFlow(StatesGroup):
    emergency = State()
    for_whom = State()
    age_group = State()
    help_type = State()
    region = State()
    urgency = State()
    note = State()
    consent = State()


class RelayFlow(StatesGroup):
    requester = State()
    partner = State()


class BroadcastFlow(StatesGroup):
    audience = State()
    region = State()
    language = State()
    message = State()
    versions = State()
    version = State()
    confirm = State()
    schedule = State()
