"""Napza test support: partner organisations with staff, help requests made through the
services (`create`) or through the chat (`ask_for_help`), and one worker tick."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.worker import worker_tick
from models import Account, AccountRole
from services import invites
from services.imports.csvfile import records_from_dicts
from services.napza import intake, routing
from services.napza.intake import RequestAnswers
from services.napza.partners import import_partner_records
from services.napza.routing import SlaPolicy
from tests.support.clock import NOW
from tg.notify.napza import send_deliveries

# --- through the services -----------------------------------------------------------

SLA = SlaPolicy(urgent=timedelta(hours=1), normal=timedelta(hours=24))
NOTE = "adik saya pakai sabu rahasia-123"
REQUESTER = 5001
ADMIN_NATIONAL, ADMIN_JABAR, ADMIN_JATIM = 9001, 9002, 9003

PARTNER_ROWS = [
    # code, region_codes, staff
    ("REG", "32.04", [101, 102]),
    ("PROV", "32", [201]),
    ("NAT", "*", [301]),
    ("NOSTAFF", "32.04", []),
    ("OTHER", "35", [401]),
]


def answers(region: str = "32.04", urgent: bool = False, note: str | None = NOTE) -> RequestAnswers:
    return RequestAnswers("family", "18_25", "konseling", region, urgent, note)


async def add_partners(
    sessionmaker: async_sessionmaker[AsyncSession],
    partners: Sequence[tuple[str, str, list[int]]] = PARTNER_ROWS,
) -> None:
    """The partners (with their staff's accounts and roles) and three admins: national,
    West Java (32) and East Java (35)."""
    rows = [
        {
            "code": code,
            "name": f"Org {code}",
            "kind": "ipwl",
            "region_codes": regions,
            "phone": "081234567890",
            "services": "",
        }
        for code, regions, _ in partners
    ]
    report = await import_partner_records(sessionmaker, records_from_dicts(rows))
    assert report.ok, report.errors
    async with sessionmaker() as session, session.begin():
        for code, _, staff in partners:
            for telegram_id in staff:
                account = await session.get(Account, telegram_id)
                if account is None:
                    session.add(Account(telegram_id=telegram_id, roles=[]))
                    await session.flush()
                session.add(AccountRole(telegram_id=telegram_id, role="partner", scope=code))
        for telegram_id, scope in (
            (ADMIN_NATIONAL, None),
            (ADMIN_JABAR, "32"),
            (ADMIN_JATIM, "35"),
        ):
            session.add(Account(telegram_id=telegram_id, roles=[]))
            await session.flush()
            session.add(AccountRole(telegram_id=telegram_id, role="admin", scope=scope))


async def create(
    sessionmaker: async_sessionmaker[AsyncSession], **kwargs: object
) -> routing.Delivery:
    """A help request by `requester` (default REQUESTER) at `now` (default NOW); the other
    keyword arguments go to `answers`."""
    requester = int(kwargs.pop("requester", REQUESTER))
    now = kwargs.pop("now", NOW)
    async with sessionmaker() as session, session.begin():
        return await intake.create_request(session, requester, answers(**kwargs), SLA, now)


# --- through the chat ---------------------------------------------------------------

PARTNERS_CSV = """\
code,name,kind,region_codes,phone,services
IPWL-3204,IPWL Rumah Sehat Bandung,ipwl,32.04,081211112222,konseling;rawat jalan
PKM-32,Puskesmas Jawa Barat,puskesmas,32,081233334444,konseling
RS-NAS,Balai Rehabilitasi Nasional,rehabilitasi,*,081255556666,rawat inap
"""


async def staff(app, sessionmaker, org: str, name: str):
    """A new user who opened a partner invite of `org` (made on the bot's clock)."""
    async with sessionmaker() as session, session.begin():
        payload = await invites.create_invite(
            session, "partner", org, created_by=None, now=app.clock()
        )
    member = await app.user(name)
    assert "staf lembaga mitra" in (await member.send(f"/start {payload}"))[-1].text
    return member


async def up_to_the_region(user, whom="Anggota keluarga", age="18–25 tahun", kind="Rawat jalan"):
    """A requester answers the questionnaire up to the region question."""
    await user.send("/napza")
    await user.press("Lanjutkan")
    await user.press(whom)
    await user.press(age)
    await user.press(kind)


async def ask_for_help(user, *, region="bandung", pick="Kabupaten Bandung", note=None):
    """A requester walks the questionnaire and sends it; the ticket."""
    await up_to_the_region(user)
    await user.send(region)
    await user.press(pick)
    await user.press("Tidak mendesak")
    if note is None:
        await user.press("Lewati")
    else:
        await user.send(note)
    replies = await user.press("Ya, kirim")
    match = re.search(r"NPZ-[0-9A-Z]{6}", replies[-1].text)
    assert match, replies[-1].text
    return match.group(0)


async def napza_tick(app, sessionmaker):
    """One worker tick on the bot's clock, its Napza deliveries sent through the bot."""
    deliveries = await worker_tick(app.ctx, app.clock())
    async with sessionmaker() as session, session.begin():
        await send_deliveries(app.bot, app.dp.workflow_data["i18n"], session, deliveries)
