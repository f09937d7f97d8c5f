from datetime import UTC, datetime
from sqlalchemy import func, select
from bot.services import shopping
from bot.services.identity import Hasher
from bot.services.shopping import BasketLine, ConfirmResult, RedemptionDraft
from models import AuditEvent, Redemption
from tests.conftest import TEST_SECRET
from tests.shopping_support import WARUNG, shopping_world

NOW = datetime(2026, 5, 20, 3, 0, tzinfo=UTC)
HASHER = Hasher(TEST_SECRET.encode())

async def test_probe(sessionmaker, tmp_path):
    world = await shopping_world(sessionmaker, HASHER, tmp_path)
    d = RedemptionDraft(key="p1", ewarong_code=WARUNG["code"], agent_telegram_id=1,
        beneficiary_id=world["siti"], lines=(BasketLine("beras", 1, 1000),))
    async with sessionmaker() as s:
        async with s.begin():
            out = await shopping.confirm(s, d, NOW)
            assert out.result is ConfirmResult.CONFIRMED
            await s.rollback()
    async with sessionmaker() as s:
        n = await s.scalar(select(func.count()).select_from(Redemption))
        a = await s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "redemption.confirmed"))
        bal = await shopping.wallet_state(s, world["siti"])
        print("redemptions after rollback:", n, "audit:", a, "balance:", bal)
