"""Settings, read once from environment variables (12-factor).

Every variable is documented in the README's "Configuration" section. The
defaults are the embedded mode: SQLite files under ``./var``, the in-memory
broadcast bus, mail written to a folder, and fixed development keys. In
production mode (``COMMUNITY_ENV=production``) the server refuses to start
while any secret key is missing or still has its development value.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

# Development keys: public on purpose, so that nothing encrypted with them can
# be mistaken for protected data. Production refuses them (see validate()).
DEV_KEYS = {
    "CONTACTS_ENCRYPTION_KEY": "ZGV2LW9ubHktY29udGFjdHMtZW5jcnlwdGlvbi1rZXk=",
    "CONTACTS_INDEX_KEY": "ZGV2LW9ubHktY29udGFjdHMtYmxpbmQtaW5kZXgta2V5IQ==",
    "LINK_KEY": "ZGV2LW9ubHktY29udGFjdC1tZW1iZXItbGluay1rZXk=",
    "TOKEN_KEY": "ZGV2LW9ubHktdGhyb3R0bGUtYW5kLXRva2VuLWtleXM=",
}


class ConfigError(RuntimeError):
    """The environment does not describe a server that may start."""


def _decode_key(name: str, value: str) -> bytes:
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except ValueError as exc:
        raise ConfigError(f"{name} is not base64") from exc
    if len(raw) < 32:
        raise ConfigError(f"{name} must decode to at least 32 bytes")
    return raw


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """The server's whole configuration; build it with :func:`load_settings`."""

    env: str = "development"
    community_db_url: str = "sqlite://var/community.sqlite3"
    contacts_db_url: str = "sqlite://var/contacts.sqlite3"
    db_pool_max: int = 10
    broadcast_url: str = "memory://"
    channel_prefix: str = "community:"
    public_base_url: str = "http://127.0.0.1:8000"
    # Secret keys (raw bytes, decoded from base64 in the environment).
    contacts_encryption_key: bytes = b""
    contacts_index_key: bytes = b""
    link_key: bytes = b""
    token_key: bytes = b""
    # Mail: with no SMTP host, messages are written to mail_dir as .eml files.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_use_tls: bool = False
    mail_from: str = "Community <no-reply@community.invalid>"
    mail_dir: str = "var/mail"
    mail_worker: bool = True
    mail_poll_seconds: float = 2.0
    mail_max_attempts: int = 12
    # Study invitations and reminders: at most this many per minute per mail worker.
    mail_bulk_per_minute: int = 60
    # Mail anyone can cause to an address (reset links, "already registered"
    # notices, address-change links): at most this many of a kind per address a day.
    mail_per_address_per_day: int = 5
    # The research job (invitation mail, reminders) runs this often in each server process.
    research_job_seconds: float = 300.0
    # Sessions and tokens.
    session_idle_minutes: int = 60 * 24 * 14
    session_absolute_days: int = 90
    verify_token_hours: int = 48
    reset_token_minutes: int = 60
    # Login throttling: failures allowed per window, per account and per address.
    login_max_failures_account: int = 5
    login_max_failures_address: int = 20
    login_window_seconds: int = 900
    # Discussions.
    post_max_length: int = 5000
    edit_window_minutes: int = 15
    posts_per_minute: int = 6
    # Reactions added or taken back per member a minute (each one is a live event).
    reactions_per_minute: int = 30
    posts_per_hour: int = 60
    typing_interval_seconds: float = 2.0
    # Moderation.
    report_hide_threshold: int = 3
    reports_per_day: int = 20
    # The same text posted again by the same member within this window is refused (0: off).
    repeat_post_minutes: int = 24 * 60
    # Links from members with fewer published posts than this are held for review.
    new_member_link_posts: int = 3
    # New members' posts are held until this many are published (0: off).
    premoderate_new_member_posts: int = 0
    # Repeat suspensions without an explicit end last these many hours, in turn.
    suspension_steps_hours: tuple[int, ...] = (24, 72, 168, 720)
    # After a ban, the member's contact data and email index are kept this long.
    ban_hold_days: int = 365
    # Lifecycle (R17, R18): inactivity warning and end, retention of mail and registrations.
    inactivity_warn_days: int = 150
    inactivity_end_days: int = 180
    outbox_retention_days: int = 30
    unverified_retention_days: int = 7
    lifecycle_job_seconds: float = 3600.0
    # Email every member when new rules are published (in-app notices always go).
    rules_change_email: bool = False
    # Moderators may lock accounts on suspected misuse, besides admins.
    moderators_lock_accounts: bool = False
    # Request limits.
    max_body_bytes: int = 256 * 1024
    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2000
    # Field selections, each multiplied by the page sizes of the connections around it.
    max_query_cost: int = 5000
    # Websockets: connection_init wait, operations at once, message rate and burst,
    # and the undelivered events a subscriber may have before it is closed as too slow.
    ws_init_timeout_seconds: float = 10.0
    ws_max_subscriptions: int = 50
    ws_messages_per_second: float = 20.0
    ws_message_burst: int = 100
    ws_queue_events: int = 1000
    # Operations: how long a stopping server lets in-flight work finish; log format;
    # a bearer token /metrics asks for (empty: open, for a private scrape network).
    shutdown_grace_seconds: float = 30.0
    log_format: str = "text"
    log_level: str = "INFO"
    metrics_token: str = ""
    # Persisted (trusted) documents: a folder of .graphql files, and whether
    # non-staff clients may only run those (production mobile apps).
    documents_dir: str = ""
    trusted_documents_only: bool = False
    trust_proxy_headers: bool = False
    # permessage-deflate costs a zlib context per socket and CPU per message;
    # our messages are small JSON, so it is off unless asked for.
    ws_compression: bool = False
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)

    @property
    def production(self) -> bool:
        return self.env == "production"

    def validate(self) -> None:
        """Refuse to run production on development or missing secrets."""
        if self.env not in {"development", "production", "test"}:
            raise ConfigError("COMMUNITY_ENV must be development, production or test")
        if self.log_format not in {"text", "json"}:
            raise ConfigError("LOG_FORMAT must be text or json")
        if self.inactivity_warn_days >= self.inactivity_end_days:
            raise ConfigError("INACTIVITY_WARN_DAYS must be less than INACTIVITY_END_DAYS")
        if not self.production:
            return
        keys = {
            "CONTACTS_ENCRYPTION_KEY": self.contacts_encryption_key,
            "CONTACTS_INDEX_KEY": self.contacts_index_key,
            "LINK_KEY": self.link_key,
            "TOKEN_KEY": self.token_key,
        }
        dev = {_decode_key(k, v) for k, v in DEV_KEYS.items()}
        bad = sorted(name for name, key in keys.items() if not key or key in dev)
        if bad:
            raise ConfigError("production mode needs real secret keys: " + ", ".join(bad))
        if len(set(keys.values())) != len(keys):
            raise ConfigError("production mode needs four different secret keys")
        if not self.smtp_host:
            raise ConfigError("production mode needs SMTP_HOST")
        if self.community_db_url == self.contacts_db_url:
            raise ConfigError("the two registers must live in two databases")

    def tortoise_config(self) -> dict[str, Any]:
        """The Tortoise ORM configuration: two connections, two model apps."""
        return tortoise_config(self.community_db_url, self.contacts_db_url, self.db_pool_max)


def tortoise_config(community_url: str, contacts_url: str, pool_max: int = 10) -> dict[str, Any]:
    def connection(url: str) -> str | dict[str, Any]:
        if url.startswith("sqlite://"):
            path = url.removeprefix("sqlite://")
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            return url
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}minsize=1&maxsize={pool_max}"

    return {
        "connections": {
            "community": connection(community_url),
            "contacts": connection(contacts_url),
        },
        "apps": {
            "community": {
                "models": [
                    "models.community",
                    "models.discussions",
                    "models.moderation",
                    "models.research",
                ],
                "default_connection": "community",
                "migrations": "models.migrations.community",
            },
            "contacts": {
                "models": ["models.contacts"],
                "default_connection": "contacts",
                "migrations": "models.migrations.contacts",
            },
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (default: the process environment)."""
    env = dict(os.environ if environ is None else environ)

    def get(name: str, default: str) -> str:
        return env.get(name, default) or default

    def key(name: str) -> bytes:
        value = env.get(name, "")
        if not value and get("COMMUNITY_ENV", "development") != "production":
            value = DEV_KEYS[name]
        return _decode_key(name, value) if value else b""

    def integer(name: str, default: int) -> int:
        try:
            return int(get(name, str(default)))
        except ValueError as exc:
            raise ConfigError(f"{name} must be an integer") from exc

    def steps(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
        raw = get(name, ",".join(str(d) for d in default))
        try:
            values = tuple(int(part) for part in raw.split(",") if part.strip())
        except ValueError as exc:
            raise ConfigError(f"{name} must be a comma-separated list of hours") from exc
        if not values or any(v <= 0 for v in values):
            raise ConfigError(f"{name} must list positive hours")
        return values

    origins = tuple(o.strip() for o in get("ALLOWED_ORIGINS", "").split(",") if o.strip())
    settings = Settings(
        env=get("COMMUNITY_ENV", "development"),
        community_db_url=get("COMMUNITY_DB_URL", Settings.community_db_url),
        contacts_db_url=get("CONTACTS_DB_URL", Settings.contacts_db_url),
        db_pool_max=integer("DB_POOL_MAX", Settings.db_pool_max),
        broadcast_url=get("BROADCAST_URL", Settings.broadcast_url),
        channel_prefix=get("BROADCAST_CHANNEL_PREFIX", Settings.channel_prefix),
        public_base_url=get("PUBLIC_BASE_URL", Settings.public_base_url).rstrip("/"),
        contacts_encryption_key=key("CONTACTS_ENCRYPTION_KEY"),
        contacts_index_key=key("CONTACTS_INDEX_KEY"),
        link_key=key("LINK_KEY"),
        token_key=key("TOKEN_KEY"),
        smtp_host=get("SMTP_HOST", ""),
        smtp_port=integer("SMTP_PORT", Settings.smtp_port),
        smtp_username=get("SMTP_USERNAME", ""),
        smtp_password=get("SMTP_PASSWORD", ""),
        smtp_starttls=_bool(get("SMTP_STARTTLS", "false")),
        smtp_use_tls=_bool(get("SMTP_TLS", "false")),
        mail_from=get("MAIL_FROM", Settings.mail_from),
        mail_dir=get("MAIL_DIR", Settings.mail_dir),
        mail_worker=_bool(get("MAIL_WORKER", "true")),
        mail_poll_seconds=float(get("MAIL_POLL_SECONDS", str(Settings.mail_poll_seconds))),
        mail_max_attempts=integer("MAIL_MAX_ATTEMPTS", Settings.mail_max_attempts),
        mail_bulk_per_minute=integer("MAIL_BULK_PER_MINUTE", Settings.mail_bulk_per_minute),
        mail_per_address_per_day=integer(
            "MAIL_PER_ADDRESS_PER_DAY", Settings.mail_per_address_per_day
        ),
        research_job_seconds=float(get("RESEARCH_JOB_SECONDS", str(Settings.research_job_seconds))),
        session_idle_minutes=integer("SESSION_IDLE_MINUTES", Settings.session_idle_minutes),
        session_absolute_days=integer("SESSION_ABSOLUTE_DAYS", Settings.session_absolute_days),
        verify_token_hours=integer("VERIFY_TOKEN_HOURS", Settings.verify_token_hours),
        reset_token_minutes=integer("RESET_TOKEN_MINUTES", Settings.reset_token_minutes),
        login_max_failures_account=integer(
            "LOGIN_MAX_FAILURES_ACCOUNT", Settings.login_max_failures_account
        ),
        login_max_failures_address=integer(
            "LOGIN_MAX_FAILURES_ADDRESS", Settings.login_max_failures_address
        ),
        login_window_seconds=integer("LOGIN_WINDOW_SECONDS", Settings.login_window_seconds),
        post_max_length=integer("POST_MAX_LENGTH", Settings.post_max_length),
        edit_window_minutes=integer("EDIT_WINDOW_MINUTES", Settings.edit_window_minutes),
        posts_per_minute=integer("POSTS_PER_MINUTE", Settings.posts_per_minute),
        reactions_per_minute=integer("REACTIONS_PER_MINUTE", Settings.reactions_per_minute),
        posts_per_hour=integer("POSTS_PER_HOUR", Settings.posts_per_hour),
        report_hide_threshold=integer("REPORT_HIDE_THRESHOLD", Settings.report_hide_threshold),
        reports_per_day=integer("REPORTS_PER_DAY", Settings.reports_per_day),
        repeat_post_minutes=integer("REPEAT_POST_MINUTES", Settings.repeat_post_minutes),
        new_member_link_posts=integer("NEW_MEMBER_LINK_POSTS", Settings.new_member_link_posts),
        premoderate_new_member_posts=integer(
            "PREMODERATE_NEW_MEMBER_POSTS", Settings.premoderate_new_member_posts
        ),
        suspension_steps_hours=steps("SUSPENSION_STEPS_HOURS", Settings.suspension_steps_hours),
        ban_hold_days=integer("BAN_HOLD_DAYS", Settings.ban_hold_days),
        inactivity_warn_days=integer("INACTIVITY_WARN_DAYS", Settings.inactivity_warn_days),
        inactivity_end_days=integer("INACTIVITY_END_DAYS", Settings.inactivity_end_days),
        outbox_retention_days=integer("OUTBOX_RETENTION_DAYS", Settings.outbox_retention_days),
        unverified_retention_days=integer(
            "UNVERIFIED_RETENTION_DAYS", Settings.unverified_retention_days
        ),
        lifecycle_job_seconds=float(
            get("LIFECYCLE_JOB_SECONDS", str(Settings.lifecycle_job_seconds))
        ),
        rules_change_email=_bool(get("RULES_CHANGE_EMAIL", "false")),
        moderators_lock_accounts=_bool(get("MODERATORS_LOCK_ACCOUNTS", "false")),
        max_body_bytes=integer("MAX_BODY_BYTES", Settings.max_body_bytes),
        trust_proxy_headers=_bool(get("TRUST_PROXY_HEADERS", "false")),
        ws_compression=_bool(get("WS_COMPRESSION", "false")),
        max_query_cost=integer("MAX_QUERY_COST", Settings.max_query_cost),
        ws_init_timeout_seconds=float(
            get("WS_INIT_TIMEOUT_SECONDS", str(Settings.ws_init_timeout_seconds))
        ),
        ws_max_subscriptions=integer("WS_MAX_SUBSCRIPTIONS", Settings.ws_max_subscriptions),
        ws_messages_per_second=float(
            get("WS_MESSAGES_PER_SECOND", str(Settings.ws_messages_per_second))
        ),
        ws_message_burst=integer("WS_MESSAGE_BURST", Settings.ws_message_burst),
        ws_queue_events=integer("WS_QUEUE_EVENTS", Settings.ws_queue_events),
        shutdown_grace_seconds=float(
            get("SHUTDOWN_GRACE_SECONDS", str(Settings.shutdown_grace_seconds))
        ),
        log_format=get(
            "LOG_FORMAT", "json" if get("COMMUNITY_ENV", "development") == "production" else "text"
        ).lower(),
        log_level=get("LOG_LEVEL", Settings.log_level).upper(),
        metrics_token=get("METRICS_TOKEN", ""),
        documents_dir=get("DOCUMENTS_DIR", ""),
        trusted_documents_only=_bool(get("TRUSTED_DOCUMENTS_ONLY", "false")),
        allowed_origins=origins,
    )
    settings.validate()
    return settings


_override: Settings | None = None


@lru_cache(maxsize=1)
def _from_environment() -> Settings:
    return load_settings()


def get_settings() -> Settings:
    """The settings in force: the environment's, or a test's override."""
    return _override if _override is not None else _from_environment()


def override_settings(settings: Settings | None) -> None:
    """Replace the settings in force (tests and the command line use this)."""
    global _override
    _override = settings


__all__ = [
    "ConfigError",
    "Settings",
    "get_settings",
    "load_settings",
    "override_settings",
    "replace",
]
