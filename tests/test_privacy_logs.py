"""Personal data typed during linking never reaches a log line."""

from __future__ import annotations

import logging

from tests.support.registry import SITI, load_registry


async def test_linking_logs_no_nik_phone_name_or_birth_date(
    bot_app, sessionmaker, tmp_path, caplog
):
    await load_registry(sessionmaker, bot_app.ctx.hasher, tmp_path)
    caplog.set_level(logging.DEBUG)
    user = await bot_app.user("Siti")
    await user.send("/start")
    await user.press("Hubungkan akun KPM")
    await user.share_contact(SITI["phone"])
    await user.send("3204105507850009")  # a wrong NIK first
    await user.send(SITI["birth_date"])
    await user.send(SITI["nik"])
    await user.send(SITI["birth_date"])
    await user.press("Status bantuan")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "update" in logged.lower()  # the bot did log its work
    for secret in (
        SITI["nik"], "3204105507850009", "081234567890", "6281234567890",
        "Siti Aminah", "15-07-1985", "1985-07-15", "5264221234567890",
    ):  # fmt: skip
        assert secret not in logged, f"personal data in the logs: {secret}"
