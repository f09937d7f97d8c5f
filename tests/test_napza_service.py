"""Napza help requests: routing, accept races, decline, SLA expiry, cancel, relay,
close, purge and privacy (on SQLite, and PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import (
    AuditEvent,
    HelpRequest,
    HelpRequestOffer,
    Region,
    RelayMessage,
)
from services.bpnt.ewarongs import import_ewarong_records
from services.imports.csvfile import records_from_dicts
from services.napza import actions, common, intake, regions, relay, retention, routing
from services.napza.actions import AcceptResult
from services.napza.intake import RequestAnswers
from tests.support.clock import NOW
from tests.support.napza import (
    ADMIN_JABAR,
    ADMIN_JATIM,
    ADMIN_NATIONAL,
    NOTE,
    REQUESTER,
    SLA,
    add_partners,
    answers,
    create,
)


async def stored(sessionmaker: async_sessionmaker[AsyncSession], request_id: int) -> HelpRequest:
    async with sessionmaker() as session:
        request = await session.get(HelpRequest, request_id)
        assert request is not None
        return request


@pytest.fixture
async def partners(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await add_partners(sessionmaker)


# --- regions -----------------------------------------------------------------------


async def test_search_regencies(session: AsyncSession) -> None:
    found = await regions.search_regencies(session, "bandung")
    assert [code for code, _ in found][:2] in (["32.04", "32.73"], ["32.73", "32.04"])
    assert set(dict(found)) == {"32.04", "32.73", "32.17"}
    assert found[-1] == ("32.17", "Kabupaten Bandung Barat")
    assert await regions.search_regencies(session, "xyz") == []
    assert await regions.search_regencies(session, "ba") == []
    assert dict(await regions.search_regencies(session, "  BANDUNG   barat ")) == {
        "32.17": "Kabupaten Bandung Barat"
    }
    assert await regions.search_regencies(session, "%%%") == []


async def test_regency_near_uses_the_nearest_ewarong(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    async with sessionmaker() as work:
        village = await work.scalar(
            select(Region.code).where(Region.code.like("32.73.%"), Region.level == 4)
        )
    assert village is not None
    row = {
        "code": "BDG-1",
        "name": "Warung",
        "village_code": village,
        "address": "Jl. Asia Afrika",
        "latitude": "-6.9175",
        "longitude": "107.6191",
        "bank": "BRI",
    }
    report = await import_ewarong_records(sessionmaker, records_from_dicts([row]))
    assert report.ok, report.errors
    assert await regions.regency_near(session, -6.92, 107.62) == "32.73"
    assert await regions.regency_near(session, -8.65, 115.22) is None  # Bali, far away


# --- creating and routing ----------------------------------------------------------


async def test_create_routes_to_the_most_specific_staffed_partner(
    sessionmaker: async_sessionmaker[AsyncSession], partners: None
) -> None:
    delivery = await create(sessionmaker, urgent=True)
    request = delivery.request
    assert delivery.partner is not None and delivery.partner.code == "REG"
    assert delivery.staff == [101, 102]
    assert delivery.admins == [] and delivery.requester is None
    assert common.TICKET_RE.match(request.ticket)
    assert request.status == "routing" and request.partner_code == "REG"
    assert request.consent_at == NOW and request.sla_due_at == NOW + timedelta(hours=1)
    normal = await create(sessionmaker, urgent=False)
    assert normal.request.sla_due_at == NOW + timedelta(hours=24)


async def test_invalid_answers_are_refused(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, partners: None
) -> None:
    bad = [
        RequestAnswers("friend", "18_25", "konseling", "32.04", False, None),
        RequestAnswers("self", "99", "konseling", "32.04", False, None),
        RequestAnswers("self", "18_25", "pijat", "32.04", False, None),
        RequestAnswers("self", "18_25", "konseling", "32", False, None),  # a province
        RequestAnswers("self", "18_25", "konseling", "99.99", False, None),
        RequestAnswers("self", "18_25", "konseling", "32.04", False, "x" * 501),
    ]
    for item in bad:
        with pytest.raises(ValueError):
            await intake.create_request(session, REQUESTER, item, SLA, NOW)
    with pytest.raises(ValueError):
        await intake.create_request(session, REQUESTER, answers(), SLA, NOW.replace(tzinfo=None))


async def test_no_partner_escalates_to_the_regions_admins(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await add_partners(sessionmaker, [("OTHER", "35", [401])])
    delivery = await create(sessionmaker)
    assert delivery.partner is None and delivery.staff == []
    assert delivery.admins == [ADMIN_NATIONAL, ADMIN_JABAR]
    assert delivery.request.status == "escalated"


async def test_routing_prefers_the_least_loaded_among_equals(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await add_partners(sessionmaker, [("A", "32", [1]), ("B", "32", [2]), ("C", "32", [3])])
    first = await create(sessionmaker, region="32.73")
    second = await create(sessionmaker, region="32.73")
    third = await create(sessionmaker, region="32.04")
    assert [d.partner.code for d in (first, second, third) if d.partner] == ["A", "B", "C"]
    async with sessionmaker() as session:
        assert await routing.open_count_by_partner(session) == {"A": 1, "B": 1, "C": 1}


async def test_inactive_partners_are_not_offered(
    sessionmaker: async_sessionmaker[AsyncSession], partners: None
) -> None:
    async with sessionmaker() as session, session.begin():
        organisation = await common.partner(session, "REG")
        assert organisation is not None
        organisation.active = False
    delivery = await create(sessionmaker)
    assert delivery.partner is not None and delivery.partner.code == "PROV"


# --- accept ------------------------------------------------------------------------


async def _accept(sessionmaker, request_id: int, partner: str, staff: int) -> actions.AcceptOutcome:
    async with sessionmaker() as session, session.begin():
        return await actions.accept(session, request_id, partner, staff, NOW)


async def test_exactly_one_staff_member_wins_the_accept_race(
    sessionmaker: async_sessionmaker[AsyncSession],
    engine,
    partners: None,
) -> None:
    request = (await create(sessionmaker)).request
    if engine.dialect.name == "postgresql":
        outcomes = await asyncio.gather(
            _accept(sessionmaker, request.id, "REG", 101),
            _accept(sessionmaker, request.id, "REG", 102),
        )
    else:
        outcomes = [
            await _accept(sessionmaker, request.id, "REG", 101),
            await _accept(sessionmaker, request.id, "REG", 102),
        ]
    results = sorted(outcome.result for outcome in outcomes)
    assert results == sorted([AcceptResult.ACCEPTED, AcceptResult.TAKEN])
    winner = next(o for o in outcomes if o.result is AcceptResult.ACCEPTED)
    loser = next(o for o in outcomes if o.result is AcceptResult.TAKEN)
    assert winner.partner is not None and winner.partner.code == "REG"
    assert loser.taken_by_partner_name == "Org REG"
    saved = await stored(sessionmaker, request.id)
    assert saved.status == "accepted" and saved.accepted_by in (101, 102)
    assert saved.sla_due_at is None
    other = await _accept(sessionmaker, request.id, "PROV", 201)
    assert other.result is AcceptResult.NOT_OFFERED_TO_YOU and other.request is None
    # A staff member of REG pretending to be PROV's is refused too.
    assert (await _accept(sessionmaker, request.id, "PROV", 101)).result is (
        AcceptResult.NOT_OFFERED_TO_YOU
    )
    async with sessionmaker() as session:
        offers = (await session.scalars(select(HelpRequestOffer))).all()
    assert [(o.partner_code, o.end_reason, o.ended_by) for o in offers] == [
        ("REG", "accepted", saved.accepted_by)
    ]


async def test_accepting_a_cancelled_request_says_closed(
    sessionmaker: async_sessionmaker[AsyncSession], partners: None
) -> None:
    request = (await create(sessionmaker)).request
    async with sessionmaker() as session, session.begin():
        assert await actions.cancel(session, request.ticket, REQUESTER, NOW) is not None
    assert (await _accept(sessionmaker, request.id, "REG", 101)).result is AcceptResult.CLOSED


# --- decline and SLA ---------------------------------------------------------------


async def _decline(sessionmaker, request_id: int, partner: str, staff: int):
    async with sessionmaker() as session, session.begin():
        return await actions.decline(session, request_id, partner, staff, SLA, NOW)


async def test_decline_moves_to_the_next_partner_then_escalates(
    sessionmaker: async_sessionmaker[AsyncSession], partners: None
) -> None:
    request = (await create(sessionmaker)).request
    async with sessionmaker() as session, session.begin():
        await routing.record_notice(session, request.id, 101, 77)
        await routing.record_notice(session, request.id, 102, 78)
    assert await _decline(sessionmaker, request.id, "PROV", 201) is None  # not offered to PROV
    step = await _decline(sessionmaker, request.id, "REG", 102)
    assert step is not None and step.partner is not None and step.partner.code == "PROV"
    assert step.staff == [201] and step.withdrawn_notices == [(101, 77), (102, 78)]
    assert await _decline(sessionmaker, request.id, "REG", 101) is None  # replayed button
    step = await _decline(sessionmaker, request.id, "PROV", 201)
    assert step is not None and step.partner is not None and step.partner.code == "NAT"
    step = await _decline(sessionmaker, request.id, "NAT", 301)
    assert step is not None and step.partner is None
    assert step.admins == [ADMIN_NATIONAL, ADMIN_JABAR] and step.requester == REQUESTER
    assert step.request.status == "escalated"
    async with sessionmaker() as session:
        offers = (
            await session.scalars(select(HelpRequestOffer).order_by(HelpRequestOffer.id))
        ).all()
        assert [(o.partner_code, o.end_reason) for o in offers] == [
            ("REG", "declined"),
            ("PROV", "declined"),
            ("NAT", "declined"),
        ]
        assert await routing.notices(session, request.id, "REG") == [(101, 77), (102, 78)]


async def test_sla_expiry_reroutes_and_escalates_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    engine,
    partners: None,
) -> None:
    request = (await create(sessionmaker, urgent=True)).request

    async def expire(now: datetime) -> list[routing.Delivery]:
        async with sessionmaker() as session, session.begin():
            return await routing.expire_due(session, SLA, now)

    assert await expire(NOW + timedelta(minutes=59)) == []
    later = NOW + timedelta(hours=1)
    moved = await expire(later)
    assert [d.partner.code for d in moved if d.partner] == ["PROV"]
    assert moved[0].request.sla_due_at == later + timedelta(hours=1)
    assert await expire(later) == []  # the new deadline is not due yet
    later += timedelta(hours=1)
    assert [d.partner.code for d in await expire(later) if d.partner] == ["NAT"]
    later += timedelta(hours=1)
    if engine.dialect.name == "postgresql":
        both = await asyncio.gather(expire(later), expire(later))
    else:
        both = [await expire(later), await expire(later)]
    escalations = [d for batch in both for d in batch]
    assert len(escalations) == 1 and escalations[0].partner is None
    assert escalations[0].admins == [ADMIN_NATIONAL, ADMIN_JABAR]
    assert (await stored(sessionmaker, request.id)).status == "escalated"
    assert await expire(later + timedelta(days=3)) == []
    async with sessionmaker() as session:
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "napza.escalated"))
        ).all()
    assert len(events) == 1


async def test_expiry_and_decline_race_moves_once(
    sessionmaker: async_sessionmaker[AsyncSession], partners: None
) -> None:
    request = (await create(sessionmaker)).request
    async with sessionmaker() as session, session.begin():
        assert await actions.decline(session, request.id, "REG", 101, SLA, NOW) is not None
        # The worker read the old state before the decline; its guarded move must fail.
        assert (
            await routing.move_on(
                session, request.id, "REG", NOW + timedelta(hours=24), "expired", SLA, NOW, None
            )
            is None
        )
    assert (await stored(sessionmaker, request.id)).partner_code == "PROV"


# --- requester side ----------------------------------------------------------------


async def test_requester_sees_and_cancels_only_their_own(
    sessionmaker: async_sessionmaker[AsyncSession], partners: None
) -> None:
    request = (await create(sessionmaker)).request
    async with sessionmaker() as session, session.begin():
        assert await actions.request_for_requester(session, request.ticket, 4242) is None
        found = await actions.request_for_requester(session, request.ticket.lower(), REQUESTER)
        assert found is not None and found.id == request.id
        assert [r.id for r in await actions.requests_of(session, REQUESTER)] == [request.id]
        assert await actions.cancel(session, request.ticket, 4242, NOW) is None
        cancelled = await actions.cancel(session, request.ticket, REQUESTER, NOW)
        assert cancelled is not None and cancelled.status == "cancelled"
        assert cancelled.partner_code == "REG" and cancelled.closed_at == NOW
        assert await actions.cancel(session, request.ticket, REQUESTER, NOW) is None
        offer = await session.scalar(select(HelpRequestOffer))
        assert offer is not None and offer.end_reason == "cancelled"


# --- relay and close ---------------------------------------------------------------


async def test_relay_and_close(
    sessionmaker: async_sessionmaker[AsyncSession], partners: None
) -> None:
    request = (await create(sessionmaker)).request
    async with sessionmaker() as session, session.begin():
        assert await relay.add_relay(session, request.id, "requester", "halo", NOW) is None
    assert (await _accept(sessionmaker, request.id, "REG", 102)).result is AcceptResult.ACCEPTED
    async with sessionmaker() as session, session.begin():
        assert await relay.add_relay(session, request.id, "requester", "halo", NOW) == 102
        assert await relay.add_relay(session, request.id, "partner", "selamat siang", NOW) is None
        assert (
            await relay.add_relay(
                session, request.id, "partner", "selamat siang", NOW, staff_id=101
            )
            == REQUESTER
        )  # any current staff member of the owning partner may write
        assert await relay.add_relay(session, request.id, "partner", "x", NOW, 999) is None
        with pytest.raises(ValueError):
            await relay.add_relay(session, request.id, "partner", "x" * 2001, NOW)
        with pytest.raises(ValueError):
            await relay.add_relay(session, request.id, "admin", "x", NOW)
        active = await relay.active_request_of(session, REQUESTER)
        assert active is not None and active.id == request.id
        with pytest.raises(ValueError):
            await actions.close(session, request.id, "REG", 101, "sembuh", NOW)
        assert await actions.close(session, request.id, "PROV", 201, "selesai", NOW) is None
        closed = await actions.close(session, request.id, "REG", 101, "dirujuk", NOW)
        assert closed is not None and closed.status == "closed" and closed.outcome == "dirujuk"
        assert await actions.close(session, request.id, "REG", 101, "dirujuk", NOW) is None
        assert await relay.add_relay(session, request.id, "partner", "lagi", NOW) is None
        assert len(await relay.relay_transcript(session, request.id)) == 2


# --- visibility --------------------------------------------------------------------


async def test_only_the_routed_partner_and_regional_admins_see_a_request(
    sessionmaker: async_sessionmaker[AsyncSession], partners: None
) -> None:
    request = (await create(sessionmaker)).request
    async with sessionmaker() as session, session.begin():
        seen = await actions.request_for_partner(session, request.id, "REG", 101, NOW)
        assert seen is not None and seen.note == NOTE
        assert await actions.request_for_partner(session, request.id, "PROV", 201, NOW) is None
        assert await actions.request_for_partner(session, request.id, "REG", 201, NOW) is None
        assert await actions.request_for_admin(session, request.id, ADMIN_JABAR, NOW) is not None
        assert await actions.request_for_admin(session, request.id, ADMIN_JATIM, NOW) is None
    async with sessionmaker() as session:
        done = [e.action for e in await session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert done.count("napza.viewed") == 2 and done.count("napza.view_refused") == 3


# --- purge and privacy -------------------------------------------------------------


async def test_purge_after_retention_only(
    sessionmaker: async_sessionmaker[AsyncSession], partners: None
) -> None:
    # Open and active within the retention period (an idle one is closed: see
    # tests/attacks/test_attack_privacy.py, finding 12).
    open_one = (await create(sessionmaker, now=NOW + timedelta(days=30))).request
    request = (await create(sessionmaker)).request
    await _accept(sessionmaker, request.id, "REG", 101)
    async with sessionmaker() as session, session.begin():
        await relay.add_relay(session, request.id, "requester", "rahasia", NOW)
        await actions.close(session, request.id, "REG", 101, "selesai", NOW)
    period = timedelta(days=90)
    async with sessionmaker() as session, session.begin():
        assert await retention.purge(session, NOW + timedelta(days=89), period) == 0
    assert (await stored(sessionmaker, request.id)).note == NOTE
    async with sessionmaker() as session, session.begin():
        assert await retention.purge(session, NOW + timedelta(days=90), period) == 1
        assert await retention.purge(session, NOW + timedelta(days=91), period) == 0
    purged = await stored(sessionmaker, request.id)
    assert purged.note is None and purged.purged_at == NOW + timedelta(days=90)
    assert purged.outcome == "selesai"
    assert (await stored(sessionmaker, open_one.id)).note == NOTE
    async with sessionmaker() as session:
        assert (await session.execute(select(RelayMessage))).first() is None


async def test_audit_never_holds_the_note_or_relayed_text(
    sessionmaker: async_sessionmaker[AsyncSession], partners: None
) -> None:
    request = (await create(sessionmaker)).request
    await _decline(sessionmaker, request.id, "REG", 101)
    await _accept(sessionmaker, request.id, "PROV", 201)
    async with sessionmaker() as session, session.begin():
        await actions.request_for_partner(session, request.id, "PROV", 201, NOW)
        await relay.add_relay(session, request.id, "requester", "pesan rahasia-456", NOW)
        await actions.close(session, request.id, "PROV", 201, "selesai", NOW)
        await retention.purge(session, NOW + timedelta(days=100), timedelta(days=90))
    async with sessionmaker() as session:
        events = (await session.scalars(select(AuditEvent))).all()
    dumped = json.dumps([[e.action, e.subject_id, e.details] for e in events])
    assert "rahasia" not in dumped and "sabu" not in dumped
    assert {
        "napza.created",
        "napza.offered",
        "napza.declined",
        "napza.accepted",
        "napza.viewed",
        "napza.relayed",
        "napza.closed",
        "napza.purged",
    } <= {e.action for e in events}
