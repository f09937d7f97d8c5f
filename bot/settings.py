"""Settings from the environment (and `.env`), per DESIGN.md's configuration table."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./bansos.db"
SECRET_FILE_NAME = ".bansos-secret"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    bot_token: str | None = None
    telegram_api_url: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    secret_key: str | None = None
    admin_ids: list[int] = Field(default_factory=list)

    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8081

    broadcast_rate: float = 25.0
    paid_broadcast: bool = False
    # Delivery engine: chunks (keyset ranges) sent at once per worker process, recipients
    # per chunk, how long a chunk stays with a silent worker, progress edits' spacing.
    broadcast_concurrency: int = 8
    broadcast_chunk_size: int = 5000
    broadcast_lease_seconds: float = 30.0
    broadcast_progress_seconds: float = 5.0
    # Prometheus /metrics for `bansos-bot worker` (the webhook serves it on its own port).
    metrics_port: int | None = None

    # Per-user throttling: at most `throttle_burst` updates in `throttle_window` seconds.
    throttle_burst: int = 15
    throttle_window: float = 5.0
    # Account linking lockout.
    link_max_failures: int = 5
    link_lockout_seconds: int = 3600
    # Wrong shopping codes typed by an agent before a lockout.
    code_max_failures: int = 5
    code_lockout_seconds: int = 900

    # Napza help requests: how long a partner has to accept before the next one is asked,
    # and how long a closed request keeps its note and relayed chat.
    napza_sla_urgent_minutes: int = 60
    napza_sla_normal_minutes: int = 1440
    napza_retention_days: int = 90
    # The background worker (SLA checks, purge): seconds between ticks.
    worker_interval_seconds: float = 30.0

    default_locale: str = "id"

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @property
    def is_sqlite(self) -> bool:
        return make_url(self.database_url).get_backend_name() == "sqlite"

    def sqlite_path(self) -> Path | None:
        url = make_url(self.database_url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        return Path(url.database)

    def resolved_secret_key(self) -> bytes:
        """The key for NIK hashing and one-time codes.

        Required outside the embedded SQLite default; for SQLite it is generated
        once into a 0600 file beside the database, with a warning.
        """
        if self.secret_key:
            return self.secret_key.encode()
        if not self.is_sqlite:
            raise RuntimeError(
                "SECRET_KEY must be set when DATABASE_URL is not SQLite "
                "(it keys NIK hashing; losing it makes linked accounts unmatchable)."
            )
        db_path = self.sqlite_path()
        folder = db_path.parent if db_path else Path.cwd()
        secret_file = folder / SECRET_FILE_NAME
        if not secret_file.exists():
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            log.warning(
                "SECRET_KEY is not set: generated one into %s (keep it with the database)",
                secret_file,
            )
        return secret_file.read_text().strip().encode()
