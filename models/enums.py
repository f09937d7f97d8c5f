"""The project's vocabulary: every status, role and kind that a column stores.

Each is a `StrEnum`, so a member compares equal to the string stored in the database
and prints as it; `EnumText` is the column type that turns those strings back into
members (and refuses a value outside the enum before it reaches the database). The
callback data in `tg.callbacks` uses the same enums as field types, so a forged
button value is refused by aiogram's filter itself.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class Role(StrEnum):
    """A role beyond KPM (a KPM is an account linked to a beneficiary)."""

    ADMIN = "admin"  # scope: a region prefix, "" for national
    AGENT = "agent"  # scope: the e-Warong code
    PARTNER = "partner"  # scope: the partner organisation code


INVITE_ROLES = (Role.AGENT, Role.PARTNER)


class Program(StrEnum):
    PKH = "PKH"
    BPNT = "BPNT"


class DisbursementStatus(StrEnum):
    DITETAPKAN = "ditetapkan"  # approved
    DIPROSES = "diproses"  # being processed
    DISALURKAN = "disalurkan"  # paid out
    GAGAL = "gagal"  # failed


class LedgerKind(StrEnum):
    """What moved money in a BPNT wallet (`ledger_entries.kind`)."""

    CREDIT = "credit"
    CREDIT_REVERSAL = "credit_reversal"
    REDEMPTION = "redemption"
    REDEMPTION_REVERSAL = "redemption_reversal"


class RequestStatus(StrEnum):
    """A Napza help request's life."""

    ROUTING = "routing"
    ACCEPTED = "accepted"
    ESCALATED = "escalated"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class ForWhom(StrEnum):
    """Who a Napza help request is for (`help_requests.for_whom`)."""

    SELF = "self"
    FAMILY = "family"


class AgeGroup(StrEnum):
    """The age group of the person who needs Napza help (`help_requests.age_group`)."""

    UNDER_18 = "under_18"
    AGE_18_25 = "18_25"
    AGE_26_40 = "26_40"
    OVER_40 = "over_40"


class HelpType(StrEnum):
    """The help a Napza request asks for (`help_requests.help_type`)."""

    KONSELING = "konseling"  # counselling
    RAWAT_JALAN = "rawat_jalan"  # outpatient care
    RAWAT_INAP = "rawat_inap"  # inpatient care
    INFORMASI = "informasi"  # information


class RequestOutcome(StrEnum):
    """How a closed Napza request ended (`help_requests.outcome`)."""

    DIRUJUK = "dirujuk"  # referred
    RAWAT_JALAN = "rawat_jalan"
    RAWAT_INAP = "rawat_inap"
    TIDAK_DAPAT_DIHUBUNGI = "tidak_dapat_dihubungi"  # could not be reached
    SELESAI = "selesai"  # completed
    TIDAK_ADA_AKTIVITAS = "tidak_ada_aktivitas"  # closed by retention, never chosen by a person


# The outcomes partner staff and admins choose from when they close a case.
CHOSEN_OUTCOMES = tuple(
    outcome for outcome in RequestOutcome if outcome is not RequestOutcome.TIDAK_ADA_AKTIVITAS
)


class OfferEnd(StrEnum):
    """How the offer of a request to one partner ended (`help_request_offers.end_reason`)."""

    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"  # its SLA deadline passed
    CANCELLED = "cancelled"  # by the requester


class RelaySender(StrEnum):
    """The side a relayed Napza message comes from (`relay_messages.sender`)."""

    REQUESTER = "requester"
    PARTNER = "partner"


class BroadcastStatus(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    CANCELLED = "cancelled"


ACTIVE_BROADCASTS = (BroadcastStatus.SCHEDULED, BroadcastStatus.RUNNING, BroadcastStatus.PAUSED)


class Audience(StrEnum):
    """Who a broadcast goes to."""

    KPM = "kpm"
    PKH = "pkh"
    BPNT = "bpnt"
    AGENTS = "agents"
    PARTNERS = "partners"


class EnumText(TypeDecorator[Any]):
    """A `StrEnum` stored as its value in a VARCHAR column (no database enum type, so
    adding a member needs no migration); read back as the member."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[StrEnum], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return self.enum(value).value  # ValueError for a value outside the vocabulary

    def process_result_value(self, value: Any, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum(value)
