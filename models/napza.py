"""Napza (drug-abuse) help: partner organisations, their coverage, help requests,
the routing history (offers), staff notices and the relayed chat."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntPK, utcnow
from models.enums import (
    AgeGroup,
    EnumText,
    ForWhom,
    HelpType,
    OfferEnd,
    RelaySender,
    RequestOutcome,
    RequestStatus,
)


class PartnerOrganisation(Base):
    """An IPWL, rehabilitation centre, puskesmas or hospital that answers help requests."""

    __tablename__ = "partner_organisations"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str] = mapped_column(String(32))  # E.164 or "" when none was given
    services: Mapped[str] = mapped_column(String(300))
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PartnerCoverage(Base):
    """A region code prefix a partner covers ("" = the whole country)."""

    __tablename__ = "partner_coverage"

    partner_code: Mapped[str] = mapped_column(
        ForeignKey("partner_organisations.code", ondelete="CASCADE"), primary_key=True
    )
    prefix: Mapped[str] = mapped_column(String(13), primary_key=True)


class HelpRequest(Base):
    """One request for Napza help; `requester_telegram_id` is never shown to partners.

    `requester_telegram_id` is None once the requester erased their data ("Hapus data
    saya"): nothing can reach them through the request any more. `last_activity_at` is
    the time of the last offer, accept, relayed message, escalation, cancel or close;
    retention counts from it, for open requests too.
    """

    __tablename__ = "help_requests"
    __table_args__ = (
        Index("ix_help_requests_status_closed_at", "status", "closed_at"),
        Index("ix_help_requests_status_last_activity_at", "status", "last_activity_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    ticket: Mapped[str] = mapped_column(String(12), unique=True)
    requester_telegram_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    for_whom: Mapped[ForWhom] = mapped_column(EnumText(ForWhom, 16))
    age_group: Mapped[AgeGroup] = mapped_column(EnumText(AgeGroup, 16))
    help_type: Mapped[HelpType] = mapped_column(EnumText(HelpType, 16))
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"))
    urgent: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str | None] = mapped_column(String(500))
    consent_at: Mapped[datetime]
    status: Mapped[RequestStatus] = mapped_column(EnumText(RequestStatus, 16))
    partner_code: Mapped[str | None] = mapped_column(
        ForeignKey("partner_organisations.code"), index=True
    )
    offered_at: Mapped[datetime | None]
    sla_due_at: Mapped[datetime | None] = mapped_column(index=True)
    accepted_by: Mapped[int | None] = mapped_column(BigInteger)
    accepted_at: Mapped[datetime | None]
    outcome: Mapped[RequestOutcome | None] = mapped_column(EnumText(RequestOutcome, 32))
    closed_at: Mapped[datetime | None]
    purged_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)


class HelpRequestOffer(Base):
    """One partner a request was offered to, and how that offer ended."""

    __tablename__ = "help_request_offers"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("help_requests.id", ondelete="CASCADE"), index=True
    )
    partner_code: Mapped[str] = mapped_column(ForeignKey("partner_organisations.code"))
    offered_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[OfferEnd | None] = mapped_column(EnumText(OfferEnd, 16))
    ended_by: Mapped[int | None] = mapped_column(BigInteger)


class HelpRequestNotice(Base):
    """A Telegram message with Accept/Decline buttons sent to a staff member."""

    __tablename__ = "help_request_notices"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("help_requests.id", ondelete="CASCADE"), index=True
    )
    # The partner the request was offered to when the notice was sent.
    partner_code: Mapped[str | None] = mapped_column(String(32))
    telegram_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)


class RelayMessage(Base):
    """A message relayed between the requester and the owning partner's staff."""

    __tablename__ = "relay_messages"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("help_requests.id", ondelete="CASCADE"), index=True
    )
    sender: Mapped[RelaySender] = mapped_column(EnumText(RelaySender, 16))
    text: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
