"""FSM states of the conversations."""

from aiogram.fsm.state import State, StatesGroup


class LinkFlow(StatesGroup):
    phone = State()
    nik = State()
    birth_date = State()
    activation_nik = State()  # families without a registry phone: NIK, then the code
    activation_code = State()


class EraseFlow(StatesGroup):
    confirm = State()


class RedeemFlow(StatesGroup):
    identify = State()
    kks_nik = State()  # a KKS number: the holder's NIK, last 4 digits
    kks_attest = State()  # then the agent attests the holder is present
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
