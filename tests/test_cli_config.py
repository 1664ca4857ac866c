"""Configuration and the `community` command line, run as a real subprocess.

Every command runs with its own environment: two SQLite files and a mail
folder in the test's tmp_path, so these tests are the same on both backends
and never touch the databases of the session server.
"""

from __future__ import annotations

import base64
import email
import email.policy
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from strawberry.relay import GlobalID

import config
from config import ConfigError, load_settings
from tests.conftest import free_port
from tests.helpers import (
    LOGIN,
    REGISTER,
    RULES_QUERY,
    VERIFY_EMAIL,
    stop_process,
    wait_until_up,
)

ROOT = Path(__file__).resolve().parent.parent
COMMUNITY = str(Path(sys.executable).parent / "community")
STRONG_PASSWORD = "Kolme sinistä kahvikuppia pöydällä"

COMMUNITY_TABLES = {
    "member",
    "session",
    "name_history",
    "rules_version",
    "rules_acceptance",
    "audit_entry",
    "notification",
    "login_throttle",
    "member_group",
    "group_membership",
    "area",
    "thread",
    "post",
    "post_edit",
    "reaction",
    "thread_event",
    "read_position",
    "report",
    "moderation_word",
    "check_decision",
    "member_sanction",
    "moderation_event",
    "moderation_counter",
    "research_attribute",
    "attribute_value",
    "segment",
    "study",
    "question",
    "response",
    "invitation",
    "answer",
    "prize_draw",
    "reward",
    "notification_counter",
}
CONTACTS_TABLES = {"contact", "consent", "email_token", "outbox_message", "banned_address"}


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def real_keys() -> dict[str, str]:
    return {name: key() for name in config.DEV_KEYS}


def production_environ(**overrides: str) -> dict[str, str]:
    environ = {
        "COMMUNITY_ENV": "production",
        "SMTP_HOST": "smtp.example.org",
        "COMMUNITY_DB_URL": "postgres://db.example.org/community",
        "CONTACTS_DB_URL": "postgres://contacts.example.org/contacts",
        **real_keys(),
    }
    environ.update(overrides)
    return {k: v for k, v in environ.items() if v != "<unset>"}


# --- Settings ------------------------------------------------------------------------------


def test_production_accepts_real_distinct_keys() -> None:
    environ = production_environ()
    settings = load_settings(environ)
    assert settings.production
    assert settings.smtp_host == "smtp.example.org"
    assert settings.contacts_encryption_key == base64.b64decode(environ["CONTACTS_ENCRYPTION_KEY"])
    assert settings.contacts_index_key == base64.b64decode(environ["CONTACTS_INDEX_KEY"])
    assert settings.link_key == base64.b64decode(environ["LINK_KEY"])
    assert settings.token_key == base64.b64decode(environ["TOKEN_KEY"])
    assert len({settings.contacts_encryption_key, settings.link_key, settings.token_key}) == 3


def test_production_accepts_urlsafe_and_unpadded_keys() -> None:
    raw = os.urandom(48)
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    settings = load_settings(production_environ(LINK_KEY=urlsafe))
    assert settings.link_key == raw


def test_development_uses_dev_keys() -> None:
    settings = load_settings({"COMMUNITY_ENV": "development"})
    assert not settings.production
    assert settings.link_key == base64.b64decode(config.DEV_KEYS["LINK_KEY"])
    assert settings.community_db_url != settings.contacts_db_url


@pytest.mark.parametrize("missing", sorted(config.DEV_KEYS))
def test_production_refuses_a_missing_key(missing: str) -> None:
    with pytest.raises(ConfigError, match=missing):
        load_settings(production_environ(**{missing: "<unset>"}))


def test_production_refuses_all_keys_missing() -> None:
    environ = {k: v for k, v in production_environ().items() if k not in config.DEV_KEYS}
    with pytest.raises(ConfigError) as raised:
        load_settings(environ)
    for name in config.DEV_KEYS:
        assert name in str(raised.value)


def test_production_refuses_empty_keys() -> None:
    with pytest.raises(ConfigError, match="real secret keys"):
        load_settings(production_environ(**dict.fromkeys(config.DEV_KEYS, "")))


def test_production_refuses_dev_keys() -> None:
    with pytest.raises(ConfigError, match="real secret keys"):
        load_settings(production_environ(**config.DEV_KEYS))


@pytest.mark.parametrize("name", sorted(config.DEV_KEYS))
def test_production_refuses_one_dev_key(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(production_environ(**{name: config.DEV_KEYS[name]}))


def test_production_refuses_a_dev_key_under_another_name() -> None:
    # A development key is public whatever variable it is put in.
    with pytest.raises(ConfigError, match="TOKEN_KEY"):
        load_settings(production_environ(TOKEN_KEY=config.DEV_KEYS["LINK_KEY"]))


def test_production_refuses_four_identical_keys() -> None:
    same = key()
    with pytest.raises(ConfigError, match="four different"):
        load_settings(production_environ(**dict.fromkeys(config.DEV_KEYS, same)))


def test_production_refuses_two_identical_keys() -> None:
    same = key()
    with pytest.raises(ConfigError, match="four different"):
        load_settings(production_environ(LINK_KEY=same, TOKEN_KEY=same))


def test_production_refuses_same_key_in_two_encodings() -> None:
    raw = os.urandom(33)  # 33 bytes: the two alphabets differ only where +/ and -_ appear
    while b"+" not in base64.b64encode(raw) and b"/" not in base64.b64encode(raw):
        raw = os.urandom(33)
    with pytest.raises(ConfigError, match="four different"):
        load_settings(
            production_environ(
                LINK_KEY=base64.b64encode(raw).decode(),
                TOKEN_KEY=base64.urlsafe_b64encode(raw).decode(),
            )
        )


def test_production_refuses_missing_smtp_host() -> None:
    with pytest.raises(ConfigError, match="SMTP_HOST"):
        load_settings(production_environ(SMTP_HOST="<unset>"))
    with pytest.raises(ConfigError, match="SMTP_HOST"):
        load_settings(production_environ(SMTP_HOST=""))


def test_production_refuses_one_database_for_both_registers() -> None:
    url = "postgres://db.example.org/community"
    with pytest.raises(ConfigError, match="two databases"):
        load_settings(production_environ(COMMUNITY_DB_URL=url, CONTACTS_DB_URL=url))


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("ä" * 48, id="non-ascii"),
        pytest.param("%%%%" + key(), id="junk-prefix"),
        pytest.param(key()[:20] + "!!" + key()[20:], id="junk-inside"),
        pytest.param(key() + "A", id="data-after-padding"),
    ],
)
@pytest.mark.parametrize("env", ["production", "development"])
def test_non_base64_key_is_config_error(env: str, value: str) -> None:
    environ = production_environ(LINK_KEY=value) if env == "production" else {"LINK_KEY": value}
    with pytest.raises(ConfigError, match="LINK_KEY is not base64"):
        load_settings(environ)


@pytest.mark.parametrize("env", ["production", "development"])
def test_passphrase_key_is_config_error(env: str) -> None:
    value = "correct horse battery staple, not base64!"
    environ = production_environ(LINK_KEY=value) if env == "production" else {"LINK_KEY": value}
    with pytest.raises(ConfigError, match="LINK_KEY"):
        load_settings(environ)


@pytest.mark.parametrize("size", [1, 16, 31])
@pytest.mark.parametrize("env", ["production", "development"])
def test_short_key_is_config_error(env: str, size: int) -> None:
    short = base64.b64encode(os.urandom(size)).decode()
    environ = production_environ(TOKEN_KEY=short) if env == "production" else {"TOKEN_KEY": short}
    with pytest.raises(ConfigError, match="TOKEN_KEY must decode to at least 32 bytes"):
        load_settings(environ)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"COMMUNITY_ENV": "staging"}, "COMMUNITY_ENV"),
        ({"DB_POOL_MAX": "many"}, "DB_POOL_MAX must be an integer"),
        ({"SMTP_PORT": "25a"}, "SMTP_PORT must be an integer"),
    ],
)
def test_malformed_settings_are_config_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ)


# --- Subprocess helpers --------------------------------------------------------------------


@dataclass
class Env:
    """A command-line environment: two SQLite files and a mail folder."""

    tmp: Path
    vars: dict[str, str]

    @property
    def community_db(self) -> Path:
        return self.tmp / "community.sqlite3"

    @property
    def contacts_db(self) -> Path:
        return self.tmp / "contacts.sqlite3"

    @property
    def mail_dir(self) -> Path:
        return self.tmp / "mail"

    def run(
        self, *args: str, extra: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [COMMUNITY, *args],
            env={**self.vars, **(extra or {})},
            cwd=self.tmp,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )

    def ok(self, *args: str, extra: dict[str, str] | None = None) -> str:
        result = self.run(*args, extra=extra)
        assert result.returncode == 0, (result.stdout, result.stderr)
        return result.stdout

    def rows(self, db: Path, sql: str, *params: Any) -> list[sqlite3.Row]:
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            return list(conn.execute(sql, params))


def base_environ() -> dict[str, str]:
    # Start from the test process's environment without any of the server's variables.
    prefixes = ("COMMUNITY_", "CONTACTS_", "SMTP_", "MAIL_", "BROADCAST_", "LINK_", "TOKEN_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def make_env(tmp: Path) -> Env:
    return Env(
        tmp=tmp,
        vars={
            **base_environ(),
            "COMMUNITY_ENV": "development",
            "COMMUNITY_DB_URL": f"sqlite://{tmp}/community.sqlite3",
            "CONTACTS_DB_URL": f"sqlite://{tmp}/contacts.sqlite3",
            "MAIL_DIR": str(tmp / "mail"),
            "BROADCAST_URL": "memory://",
            "PUBLIC_BASE_URL": "https://community.example",
            "LOG_LEVEL": "warning",
        },
    )


@pytest.fixture
def cli(tmp_path: Path) -> Env:
    return make_env(tmp_path)


@pytest.fixture(scope="module")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Env:
    template = make_env(tmp_path_factory.mktemp("migrated"))
    template.ok("migrate")
    return template


@pytest.fixture
def migrated(cli: Env, migrated_template: Env) -> Env:
    """Freshly migrated registers (copies of databases migrated once by `community migrate`)."""
    for name in ("community.sqlite3", "contacts.sqlite3"):
        shutil.copyfile(migrated_template.tmp / name, cli.tmp / name)
    return cli


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        }


def schema_sql(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"))


# --- Production start-up refused -----------------------------------------------------------


def test_serve_in_production_with_dev_keys_exits_with_configuration_error(cli: Env) -> None:
    extra = {
        "COMMUNITY_ENV": "production",
        "SMTP_HOST": "127.0.0.1",
        "PORT": str(free_port()),
        **config.DEV_KEYS,
    }
    result = cli.run("serve", extra=extra, timeout=30)
    assert result.returncode != 0
    assert "configuration error" in result.stderr
    assert "CONTACTS_ENCRYPTION_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    # Refused before touching anything: no database was created.
    assert not cli.community_db.exists()
    assert not cli.contacts_db.exists()


def test_migrate_in_production_without_keys_exits_with_configuration_error(cli: Env) -> None:
    result = cli.run("migrate", extra={"COMMUNITY_ENV": "production", "SMTP_HOST": "x"})
    assert result.returncode != 0
    assert "configuration error" in result.stderr
    assert not cli.community_db.exists()


# --- migrate -------------------------------------------------------------------------------


def test_migrate_creates_each_register_in_its_own_database(cli: Env) -> None:
    cli.ok("migrate")
    assert cli.community_db.exists() and cli.contacts_db.exists()
    community = tables(cli.community_db)
    contacts = tables(cli.contacts_db)
    assert community >= COMMUNITY_TABLES, community
    assert contacts >= CONTACTS_TABLES, contacts
    # Each register holds only its own tables (besides the migration bookkeeping).
    assert not community & CONTACTS_TABLES, community
    assert not contacts & COMMUNITY_TABLES, contacts
    assert community - COMMUNITY_TABLES <= {"tortoise_migrations"}, community
    assert contacts - CONTACTS_TABLES <= {"tortoise_migrations"}, contacts
    # No contact data column leaks into the community register.
    for table in COMMUNITY_TABLES:
        columns = {r["name"] for r in cli.rows(cli.community_db, f'PRAGMA table_info("{table}")')}
        assert not columns & {"email", "email_ciphertext", "birth_year", "contact_id"}, table


def test_migrate_twice_is_a_no_op(cli: Env) -> None:
    cli.ok("migrate")
    before = (schema_sql(cli.community_db), schema_sql(cli.contacts_db))
    applied = [
        cli.rows(db, "SELECT * FROM tortoise_migrations")
        for db in (cli.community_db, cli.contacts_db)
    ]
    assert all(applied), "migrations are recorded"
    result = cli.run("migrate")
    assert result.returncode == 0, result.stderr
    assert (schema_sql(cli.community_db), schema_sql(cli.contacts_db)) == before
    again = [
        cli.rows(db, "SELECT * FROM tortoise_migrations")
        for db in (cli.community_db, cli.contacts_db)
    ]
    assert [len(rows) for rows in again] == [len(rows) for rows in applied]


# --- publish-rules -------------------------------------------------------------------------


def rules_file(tmp: Path, n: int, drop: str | None = None) -> Path:
    texts = {
        "fi": f'"""\nSäännöt, versio {n}.\nKeskustelu käydään anonyymisti.\n"""',
        "sv": f'"Regler, version {n}."',
        "en": f'"Rules, version {n}."',
    }
    path = tmp / f"rules-{n}.toml"
    lines = [
        "# community rules",
        *(f"{lang} = {text}" for lang, text in texts.items() if lang != drop),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_publish_rules_versions(migrated: Env) -> None:
    env = migrated
    out = env.ok("publish-rules", str(rules_file(env.tmp, 1)))
    assert "published rules version 1" in out
    out = env.ok("publish-rules", str(rules_file(env.tmp, 2)))
    assert "published rules version 2" in out
    rows = env.rows(
        env.community_db,
        "SELECT version, text_fi, text_sv, text_en FROM rules_version ORDER BY version",
    )
    assert [tuple(r) for r in rows] == [
        (
            1,
            "Säännöt, versio 1.\nKeskustelu käydään anonyymisti.",
            "Regler, version 1.",
            "Rules, version 1.",
        ),
        (
            2,
            "Säännöt, versio 2.\nKeskustelu käydään anonyymisti.",
            "Regler, version 2.",
            "Rules, version 2.",
        ),
    ]


def test_publish_rules_if_none(migrated: Env) -> None:
    env = migrated
    # On an empty register --if-none publishes (first deployment) ...
    out = env.ok("publish-rules", "--if-none", str(rules_file(env.tmp, 1)))
    assert "published rules version 1" in out
    # ... and afterwards does nothing.
    out = env.ok("publish-rules", "--if-none", str(rules_file(env.tmp, 2)))
    assert "nothing to do" in out
    rows = env.rows(env.community_db, "SELECT version, text_en FROM rules_version")
    assert [tuple(r) for r in rows] == [(1, "Rules, version 1.")]


def test_publish_default_rules(migrated: Env) -> None:
    out = migrated.ok("publish-rules", "--if-none")
    assert "published rules version 1" in out
    (row,) = migrated.rows(
        migrated.community_db, "SELECT text_fi, text_sv, text_en FROM rules_version"
    )
    assert "16" in row["text_fi"] and row["text_sv"] and row["text_en"]


@pytest.mark.parametrize("drop", ["fi", "sv", "en"])
def test_publish_rules_missing_language_fails(migrated: Env, drop: str) -> None:
    env = migrated
    result = env.run("publish-rules", str(rules_file(env.tmp, 1, drop=drop)))
    assert result.returncode != 0
    assert f"missing: {drop}" in result.stderr
    assert "Traceback" not in result.stderr
    assert env.rows(env.community_db, "SELECT * FROM rules_version") == []


@pytest.mark.parametrize("content", ['fi = "Säännöt\nsv = "Regler"\n', None], ids=["bad", "absent"])
def test_publish_rules_unreadable_file_fails_cleanly(migrated: Env, content: str | None) -> None:
    path = migrated.tmp / "broken.toml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = migrated.run("publish-rules", str(path))
    assert result.returncode != 0
    assert "broken.toml" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert migrated.rows(migrated.community_db, "SELECT * FROM rules_version") == []


def test_publish_rules_blank_language_fails(migrated: Env) -> None:
    path = migrated.tmp / "blank.toml"
    path.write_text('fi = "Säännöt"\nsv = "   "\nen = "Rules"\n', encoding="utf-8")
    result = migrated.run("publish-rules", str(path))
    assert result.returncode != 0
    assert "missing: sv" in result.stderr
    assert migrated.rows(migrated.community_db, "SELECT * FROM rules_version") == []


# --- create-staff --------------------------------------------------------------------------


def create_staff(env: Env, role: str, login: str, display: str, password: str) -> Any:
    return env.run(
        "create-staff",
        "--role",
        role,
        "--login",
        login,
        "--display-name",
        display,
        extra={"STAFF_PASSWORD": password},
    )


def test_create_staff_moderator(migrated: Env) -> None:
    env = migrated
    result = create_staff(env, "moderator", "modanna", "Moderaattori Anna", STRONG_PASSWORD)
    assert result.returncode == 0, result.stderr
    assert "created moderator 'modanna'" in result.stdout
    (row,) = env.rows(env.community_db, "SELECT * FROM member")
    assert row["login_name"] == "modanna"
    assert row["display_name"] == "Moderaattori Anna"
    assert row["role"] == "moderator"
    assert row["status"] == "active"
    assert row["activated_at"] is not None
    assert row["password_hash"].startswith("$argon2")
    assert STRONG_PASSWORD not in row["password_hash"]
    (audit,) = env.rows(env.community_db, "SELECT * FROM audit_entry")
    assert audit["action"] == "staff.create"
    assert audit["target_member_id"] == row["id"]
    # Staff are not members: nothing in the contacts register.
    assert env.rows(env.contacts_db, "SELECT * FROM contact") == []


def test_create_staff_refuses_bad_role(migrated: Env) -> None:
    result = create_staff(migrated, "superuser", "someone", "Some One", STRONG_PASSWORD)
    assert result.returncode == 2
    assert "invalid choice: 'superuser'" in result.stderr
    result = create_staff(migrated, "member", "someone", "Some One", STRONG_PASSWORD)
    assert result.returncode == 2
    assert migrated.rows(migrated.community_db, "SELECT * FROM member") == []


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("short", "PASSWORD_TOO_SHORT"),
        ("password123", "PASSWORD_TOO_COMMON"),
    ],
)
def test_create_staff_refuses_weak_password(migrated: Env, password: str, code: str) -> None:
    result = create_staff(migrated, "researcher", "tiinat", "Tutkija Tiina", password)
    assert result.returncode != 0
    assert code in result.stderr, result.stderr
    assert password not in result.stderr
    assert migrated.rows(migrated.community_db, "SELECT * FROM member") == []


def test_create_staff_refuses_taken_login(migrated: Env) -> None:
    first = create_staff(migrated, "admin", "operaattori", "Operaattori Olli", STRONG_PASSWORD)
    assert first.returncode == 0, first.stderr
    again = create_staff(migrated, "researcher", "Operaattori", "Toinen Nimi", STRONG_PASSWORD)
    assert again.returncode != 0
    assert "NAME_TAKEN" in again.stderr
    rows = migrated.rows(migrated.community_db, "SELECT role FROM member")
    assert [r["role"] for r in rows] == ["admin"]


# --- export-schema -------------------------------------------------------------------------


def test_export_schema_matches_committed_sdl(cli: Env) -> None:
    out = cli.tmp / "exported.graphql"
    stdout = cli.ok("export-schema", str(out))
    assert f"wrote {out}" in stdout
    assert out.read_text() == (ROOT / "schema.graphql").read_text()
    assert "type Query {" in out.read_text()


# --- A served instance, then mail-worker --once --------------------------------------------


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture
def serve(migrated: Env) -> Iterator[Any]:
    """Start `community serve` on the tmp databases; returns a function to start it."""
    started: list[subprocess.Popen[bytes]] = []

    def start(extra: dict[str, str]) -> Served:
        port = free_port()
        log = migrated.tmp / f"serve-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [COMMUNITY, "serve", "--no-migrate", "--port", str(port)],
                env={**migrated.vars, **extra},
                cwd=migrated.tmp,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_until_up(process, f"{url}/readyz", log)
        return Served(url=url, process=process)

    yield start
    for process in started:
        if process.poll() is None:
            stop_process(process)


def gql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body


def read_eml(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_staff_created_by_cli_can_sign_in(migrated: Env, serve: Any) -> None:
    migrated.ok("publish-rules", "--if-none")
    result = create_staff(migrated, "moderator", "modanna", "Moderaattori Anna", STRONG_PASSWORD)
    assert result.returncode == 0, result.stderr
    served = serve({"MAIL_WORKER": "false"})
    body = gql(served.url, LOGIN, {"login": "MODANNA", "password": STRONG_PASSWORD})
    signed_in = body["data"]["login"]
    assert signed_in["__typename"] == "LoginSuccess", signed_in
    (staff_row,) = migrated.rows(migrated.community_db, "SELECT id FROM member")
    assert signed_in["me"] == {
        "id": str(GlobalID("Member", str(staff_row["id"]))),
        "loginName": "modanna",
        "displayName": "Moderaattori Anna",
        "role": "MODERATOR",
    }
    (row,) = migrated.rows(migrated.community_db, "SELECT COUNT(*) AS n FROM session")
    assert row["n"] == 1


def test_mail_worker_once_delivers_outbox_into_mail_dir(migrated: Env, serve: Any) -> None:
    env = migrated
    env.ok("publish-rules", "--if-none")
    # The server's own worker is off: mail waits in the outbox for the command.
    served = serve({"MAIL_WORKER": "false"})
    rules_id = gql(served.url, RULES_QUERY)["data"]["rules"]["current"]["id"]
    body = gql(
        served.url,
        REGISTER,
        {
            "input": {
                "email": "Sofia.Svensson@Example.com",
                "birthDate": "1988-02-29",
                "language": "SV",
                "loginName": "sofias",
                "displayName": "Sjöjungfrun",
                "password": STRONG_PASSWORD,
                "rulesVersionId": rules_id,
            }
        },
    )
    assert body["data"]["register"]["__typename"] == "RegisterSuccess", body
    (pending,) = env.rows(env.contacts_db, "SELECT * FROM outbox_message")
    assert pending["status"] == "pending"
    assert pending["template"] == "verify"
    # Recipient and body are stored encrypted only.
    assert b"Svensson" not in bytes(pending["recipient_ciphertext"]).lower()
    assert not env.mail_dir.exists() or not list(env.mail_dir.iterdir())

    out = env.ok("mail-worker", "--once")
    assert "delivered 1 messages" in out
    files = sorted(env.mail_dir.glob("*.eml"))
    assert [f.name for f in files] == [f"{pending['id']}-verify.eml"]
    message = read_eml(files[0])
    assert message["To"] == "sofia.svensson@example.com"
    assert message["Subject"] == "Bekräfta din e-postadress"
    assert message["Content-Language"] == "sv"
    text = message.get_content()
    assert "Sjöjungfrun" in text
    match = re.search(r"https://community\.example/\S*token=([\w\-.~%]+)", text)
    assert match, text
    (sent,) = env.rows(env.contacts_db, "SELECT status, sent_at, attempts FROM outbox_message")
    assert sent["status"] == "sent" and sent["sent_at"] is not None and sent["attempts"] == 0

    # Nothing is delivered twice.
    assert "delivered 0 messages" in env.ok("mail-worker", "--once")
    assert len(list(env.mail_dir.glob("*.eml"))) == 1

    # The link in the delivered mail really verifies the address.
    token = httpx.URL(match.group(0)).params["token"]
    verified = gql(served.url, VERIFY_EMAIL, {"token": token})["data"]["verifyEmail"]
    (member,) = env.rows(env.community_db, "SELECT id, status FROM member")
    assert verified == {
        "__typename": "VerifyEmailSuccess",
        "member": {
            "id": str(GlobalID("Member", str(member["id"]))),
            "displayName": "Sjöjungfrun",
            "isFormerMember": False,
        },
    }
    assert member["status"] == "active"


def test_mail_worker_once_with_empty_outbox(migrated: Env) -> None:
    assert "delivered 0 messages" in migrated.ok("mail-worker", "--once")
    assert not migrated.mail_dir.exists() or not list(migrated.mail_dir.iterdir())
