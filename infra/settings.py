"""Settings from the environment (and `.env`), per DESIGN.md's configuration table."""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
import sys
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./bansos.db"
SECRET_FILE_NAME = ".bansos-secret"
# Shorter keys still work, with a warning: the NIK space is small, so the key is what
# keeps a leaked table of NIK hashes from being reversed by trying every NIK.
SECRET_KEY_MIN_LENGTH = 32
# Telegram's rule for a webhook's secret_token is 1-256 of A-Z a-z 0-9 _ -; we ask for 32+.
WEBHOOK_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{32,256}$")
GENERATE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
# Telegram user ids have at most 52 significant bits: 16 digits at most.
TELEGRAM_ID_RE = re.compile(r"^[0-9]{1,16}$")


class ConfigurationError(SystemExit):
    """A setting the process cannot run without; the message says what to set and how.

    A SystemExit, so that every entry point (CLI commands, worker, webhook) stops with just
    this message and status 1, and no `except Exception` on the way swallows it.
    """


class InvalidSetting(ConfigurationError):
    """A setting whose value has the wrong form (`WEBHOOK_PORT=x`): status 2, like a bad
    command-line option. `load_settings` prints `message` (one line) before raising it."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Settings(BaseSettings):
    # env_ignore_empty: `NAME=` (as docker-compose passes an unset variable, and as
    # .env.example shows them) means not set, so the default applies.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    # repr=False: secrets (and URLs that may hold passwords) stay out of reprs and tracebacks.
    bot_token: str | None = Field(default=None, repr=False)
    telegram_api_url: str | None = None
    database_url: str = Field(default=DEFAULT_DATABASE_URL, repr=False)
    redis_url: str | None = Field(default=None, repr=False)
    secret_key: str | None = Field(default=None, repr=False)
    # NoDecode: the environment gives `1,2` (split below), not JSON.
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    webhook_url: str | None = None
    webhook_secret: str | None = Field(default=None, repr=False)
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
    # Account linking lockout: failures per Telegram account and per NIK (whichever
    # accounts typed it) within `link_lockout_seconds`, and a ceiling of failed links per
    # minute across everyone (a flood of new accounts is an attack: linking pauses).
    link_max_failures: int = 5
    link_nik_max_failures: int = 5
    link_lockout_seconds: int = 3600
    link_failures_per_minute: int = 120
    # One-time activation codes for families without a phone in the registry.
    activation_code_days: int = 30
    # Wrong shopping codes or KKS numbers: per agent, per e-Warong (all its agents) within
    # `code_lockout_seconds`, and per minute across the country.
    code_max_failures: int = 5
    code_ewarong_max_failures: int = 20
    code_lockout_seconds: int = 900
    code_failures_per_minute: int = 200
    # Redemptions by KKS card number alone (no Telegram code) per family per month.
    kks_redemptions_per_month: int = 2
    # "Nearest e-Warong" lists only shops within this distance of the family.
    nearest_ewarong_km: float = Field(default=25.0, gt=0)
    # FSM state and data of an abandoned conversation expire after this long (Redis).
    fsm_ttl_seconds: int = 86400

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
        """`1,2`, `1;2`, `1 2` or `[1, 2]`; blank means none."""
        if isinstance(value, str):
            text = value.strip().removeprefix("[").removesuffix("]")
            parts = [part for part in re.split(r"[,;\s]+", text) if part]
            if not all(TELEGRAM_ID_RE.match(part) and int(part) > 0 for part in parts):
                raise ValueError("not Telegram user ids")
            return [int(part) for part in parts]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("secret_key", "webhook_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`SECRET_KEY=` (as docker-compose passes an unset variable) means not set."""
        if isinstance(value, str):
            return value.strip() or None
        return value

    @property
    def is_sqlite(self) -> bool:
        return make_url(self.database_url).get_backend_name() == "sqlite"

    def sqlite_path(self) -> Path | None:
        url = make_url(self.database_url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        return Path(url.database)

    @property
    def secret_file(self) -> Path:
        """Where the embedded default keeps its generated key: beside the SQLite database."""
        db_path = self.sqlite_path()
        return (db_path.parent if db_path else Path.cwd()) / SECRET_FILE_NAME

    def require_secret_key(self, when: str) -> None:
        """Stop with a ConfigurationError unless SECRET_KEY is set (`when`: why it must be)."""
        if self.secret_key:
            return
        existing = ""
        if self.is_sqlite and self.secret_file.exists():
            existing = (
                f" This database already has a generated key in {self.secret_file}: set"
                " SECRET_KEY to its content, or accounts linked so far stop matching."
            )
        raise ConfigurationError(
            f"SECRET_KEY must be set {when}. It keys the NIK, phone and KKS hashes and the"
            " shopping codes; keep it secret and never change it (with another key no stored"
            " hash matches again). Make one with"
            f" {GENERATE_SECRET} and put SECRET_KEY=... in the environment or in .env." + existing
        )

    def check_webhook_secret(self) -> None:
        """WEBHOOK_SECRET must be set and strong; it is never generated, because every
        webhook process (and the setWebhook call) has to agree on the same one."""
        secret = self.webhook_secret
        if not secret:
            raise ConfigurationError(
                "WEBHOOK_SECRET must be set to run a webhook: Telegram sends it with every"
                " update and requests without it are refused. Make one with"
                f" {GENERATE_SECRET} and put WEBHOOK_SECRET=... in the environment or .env."
            )
        if not WEBHOOK_SECRET_RE.match(secret):
            raise ConfigurationError(
                "WEBHOOK_SECRET must be 32 to 256 of A-Z a-z 0-9 _ - (Telegram's alphabet)."
                f" Make one with {GENERATE_SECRET}."
            )

    def check_webhook(self) -> None:
        """Everything webhook mode needs, before anything starts: a public URL, the secret
        token, and an explicit SECRET_KEY (a webhook is a production deployment, even on
        SQLite)."""
        if not self.webhook_url:
            raise ConfigurationError(
                "WEBHOOK_URL must be set to run a webhook: the public https URL ending in /webhook."
            )
        self.check_webhook_secret()
        self.require_secret_key("to run a webhook")

    def resolved_secret_key(self) -> bytes:
        """The key for NIK hashing and one-time codes.

        Required (ConfigurationError) when DATABASE_URL is not SQLite. In the embedded
        SQLite default it is generated once into a 0600 file beside the database, with a
        warning, so `make run` needs no configuration.
        """
        if self.secret_key:
            if len(self.secret_key) < SECRET_KEY_MIN_LENGTH:
                log.warning(
                    "SECRET_KEY is shorter than %d characters; use a random one (%s)",
                    SECRET_KEY_MIN_LENGTH,
                    GENERATE_SECRET,
                )
            self._warn_if_generated_key_differs()
            return self.secret_key.encode()
        if not self.is_sqlite:
            self.require_secret_key("when DATABASE_URL is not SQLite")
        secret_file = self.secret_file
        if not secret_file.exists():
            secret_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            log.warning(
                "SECRET_KEY is not set: generated one into %s (keep it with the database)",
                secret_file,
            )
        elif secret_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s can be read by other users: chmod 600 it", secret_file)
        return secret_file.read_text().strip().encode()

    def _warn_if_generated_key_differs(self) -> None:
        """An explicit key beside a generated one that differs: linked accounts break."""
        if not self.is_sqlite or not self.secret_file.exists():
            return
        generated = self.secret_file.read_text().strip()
        if (
            generated
            and self.secret_key
            and not secrets.compare_digest(generated.encode(), self.secret_key.encode())
        ):
            log.warning(
                "SECRET_KEY differs from the key generated earlier in %s: NIK, phone and KKS"
                " hashes made under that key no longer match",
                self.secret_file,
            )


# What a setting of each kind must look like, for the one-line message of `load_settings`.
EXPECTED_BY_FIELD = {"admin_ids": "Telegram user ids separated by commas"}
EXPECTED_BY_ERROR = {
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "int_type": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
}
SHOWN_VALUE_MAX = 40


def _shown_value(name: str, value: object) -> str:
    """`got '...'` for a refused value; secrets (fields with repr=False) are never shown."""
    field = Settings.model_fields.get(name)
    if field is not None and not field.repr:
        return "value not shown"
    text = value if isinstance(value, str) else repr(value)
    if len(text) > SHOWN_VALUE_MAX:
        text = text[:SHOWN_VALUE_MAX] + "..."
    return f"got {text!r}"


def describe_settings_error(error: ValidationError | SourceError) -> str:
    """One line naming each refused environment variable and what it must be."""
    if isinstance(error, SourceError):  # a value pydantic-settings could not even decode
        found = re.search(r'field "(\w+)"', str(error))
        name = found.group(1).upper() if found else "a setting"
        return f"{name} cannot be read from the environment or .env"
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        expected = EXPECTED_BY_FIELD.get(field) or EXPECTED_BY_ERROR.get(item["type"])
        rule = f"must be {expected}" if expected else f"is not valid ({item['msg']})"
        problems.append(f"{field.upper()} {rule} ({_shown_value(field, item.get('input'))})")
    return "; ".join(problems)


def load_settings(**values: Any) -> Settings:
    """The settings from the environment and .env (and `values`), for every entry point.

    A value of the wrong form (`ADMIN_IDS=abc`, `WEBHOOK_PORT=x`) stops the process
    with one line on stderr naming the variable, and status 2: never a traceback."""
    try:
        return Settings(**values)
    except (ValidationError, SourceError) as error:
        message = describe_settings_error(error)
    print(f"Configuration error: {message}", file=sys.stderr, flush=True)
    raise InvalidSetting(message)
