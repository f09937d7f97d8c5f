"""Test support shared by the suite (no tests here).

clock      NOW, the suite's instant, and the Clock a test moves by hand
registry   the test families (SITI, BUDI...) imported through the real CSV importers
shopping   the families plus two e-Warongs, and the steps of a sale in the chat
people     a linked KPM, an e-Warong agent, an admin, made as the real people are
napza      partner organisations and staff, help requests, one worker tick
broadcast  many linked accounts at once (bulk inserts), for broadcast tests
cli        `bansos-bot ARGS` against the test database
servers    private PostgreSQL and Redis servers fault tests may break; `polling_bot`
inprocess  the in-process dispatcher tier with a recording Bot API session
botapi_spec  Telegram's published Bot API methods, for the recording session
"""
