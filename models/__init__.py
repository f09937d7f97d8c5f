"""SQLAlchemy 2.0 models, one module per aggregate. No business rules here."""

from models.account import Account, AccountRole
from models.activation import ActivationCode
from models.audit import AuditEvent
from models.base import Base
from models.beneficiary import Beneficiary, PkhComponent, PkhComponentRate
from models.broadcast import Broadcast, BroadcastChunk, BroadcastFailure, BroadcastVersion
from models.disbursement import Disbursement
from models.ewarong import EWarong, Redemption, ShoppingCode
from models.invite import Invite
from models.ledger import BpntWallet, LedgerEntry
from models.napza import (
    HelpRequest,
    HelpRequestNotice,
    HelpRequestOffer,
    PartnerCoverage,
    PartnerOrganisation,
    RelayMessage,
)
from models.outbox import OutboxNotice
from models.region import Region

__all__ = [
    "Account",
    "AccountRole",
    "ActivationCode",
    "AuditEvent",
    "Base",
    "Beneficiary",
    "BpntWallet",
    "Broadcast",
    "BroadcastChunk",
    "BroadcastFailure",
    "BroadcastVersion",
    "Disbursement",
    "EWarong",
    "HelpRequest",
    "HelpRequestNotice",
    "HelpRequestOffer",
    "Invite",
    "LedgerEntry",
    "OutboxNotice",
    "PartnerCoverage",
    "PartnerOrganisation",
    "PkhComponent",
    "PkhComponentRate",
    "Redemption",
    "Region",
    "RelayMessage",
    "ShoppingCode",
]
