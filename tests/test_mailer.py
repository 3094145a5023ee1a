"""The outbox and its sender: delivery, retries through an outage, several senders, leases,
the development fallback, the clean-up timer; and the pure pieces (token, message, back-off).

The senders here run on a database of their own, where no API runs a sender of its own."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import replace
from typing import Any

import aiosmtplib
import asyncpg
import pytest

from scriptlabs.auth import mailer, reset
from scriptlabs.auth.mailer import Content, MailSender
from scriptlabs.auth.reset import ResetToken
from scriptlabs.config import Settings
from scriptlabs.db.operation import Pool
from tests.conftest import Database, SmtpSink, create_database, free_port

CONTENT = Content("Hello", "Plain body\n", "<p>HTML body</p>\n")


# -- pure pieces


def test_retry_delay_doubles_up_to_the_ceiling() -> None:
    assert [mailer.retry_delay(n, 45) for n in range(1, 8)] == [2, 4, 8, 16, 32, 45, 45]
    assert mailer.retry_delay(1000, 60) == 60
    assert mailer.retry_delay(5, 1) == 1


def test_a_reset_token_is_base64url_with_256_random_bits_and_round_trips() -> None:
    user_id = uuid.uuid4()
    tokens = [ResetToken.new(user_id) for _ in range(50)]
    values = {t.value for t in tokens}
    assert len(values) == 50
    for token in tokens:
        assert len(token.secret) * 8 >= 256
        assert len(token.value) == 86
        assert set(token.value) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
        assert ResetToken.parse(token.value) == token
        assert ResetToken.parse(f" {token.value}\n") == token
        assert token.hash != token.value.encode() and len(token.hash) == 32


def test_only_the_canonical_spelling_of_a_token_parses() -> None:
    token = ResetToken.new(uuid.uuid4())
    raw = base64.urlsafe_b64decode(token.value + "==")
    assert base64.urlsafe_b64encode(raw).decode().rstrip("=") == token.value
    # the last character carries 2 unused bits: another letter decoding to the same bytes
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token.value[-1])
    twin = token.value[:-1] + alphabet[last ^ 1]
    assert ResetToken.parse(twin) is None
    for garbage in ("", "abc", token.value + "=", token.value[:-1], token.value + "A", "é" * 86):
        assert ResetToken.parse(garbage) is None


def test_emails_are_masked() -> None:
    assert reset.mask_email("jane@example.com") == "j***@example.com"
    assert reset.mask_email("j@example.com") == "j***@example.com"
    assert reset.mask_email("odd") == "***"


def test_the_reset_message_escapes_the_link_in_html() -> None:
    settings = Settings(public_url="https://example.com/app?x=1&y=<2>")
    link = reset.reset_link(settings, "TOKEN")
    content = reset.reset_message(link)
    assert content.subject == "Reset your Script Labs password"
    assert link in content.body_text
    assert content.body_html is not None
    assert "&amp;y=&lt;2&gt;/reset-password?token=TOKEN" in content.body_html
    assert "<2>" not in content.body_html
    assert "expires in 1 hour" in content.body_text
    assert "ignore this email" in content.body_text


def test_compose_makes_a_text_and_html_message() -> None:
    settings = Settings(mail_from="Script Labs <no-reply@scriptlabs.test>")
    message = mailer.compose(settings, "to@example.com", CONTENT)
    assert message["From"] == "Script Labs <no-reply@scriptlabs.test>"
    assert message["To"] == "to@example.com"
    assert message["Subject"] == "Hello"
    assert message["Message-ID"].endswith("@scriptlabs.test>")
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and text.get_content() == "Plain body\n"
    assert html is not None and html.get_content() == "<p>HTML body</p>\n"


def test_only_a_permanent_refusal_of_every_recipient_gives_up() -> None:
    refused = aiosmtplib.SMTPRecipientRefused(550, "no such user", "a@example.com")
    busy = aiosmtplib.SMTPRecipientRefused(450, "mailbox busy", "a@example.com")
    assert mailer.is_permanent(aiosmtplib.SMTPRecipientsRefused([refused]))
    assert not mailer.is_permanent(aiosmtplib.SMTPRecipientsRefused([busy]))
    assert not mailer.is_permanent(aiosmtplib.SMTPAuthenticationError(535, "bad credentials"))
    assert not mailer.is_permanent(ConnectionRefusedError())


# -- the sender, on a database of its own


@pytest.fixture(scope="module")
async def sender_database(database: Database) -> Database:
    return await create_database(database, f"scriptlabs_sender_{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def outbox(sender_database: Database) -> AsyncIterator[asyncpg.Connection]:
    """The owner's connection; whatever a test leaves undelivered is settled afterwards."""
    conn = await asyncpg.connect(sender_database.admin_dsn)
    try:
        yield conn
        await conn.execute(
            "update scriptlabs_private.mail_outbox set sent_at = now(), body_text = null,"
            " body_html = null where sent_at is null and failed_at is null"
        )
    finally:
        await conn.close()


@pytest.fixture
def sender_settings(settings: Settings, sender_database: Database) -> Settings:
    return replace(
        settings,
        database_url=sender_database.dsn,
        database_admin_url=sender_database.admin_dsn,
        smtp_host=None,
        public_url="https://app.scriptlabs.test",
        mail_poll_seconds=0.1,
        mail_retry_max_seconds=1,
    )


Senders = Callable[..., Coroutine[Any, Any, MailSender]]


@pytest.fixture
async def start_sender(sender_settings: Settings) -> AsyncIterator[Senders]:
    """Start a MailSender with its own pool (as another process would have); all are stopped
    and closed at the end of the test."""
    started: list[tuple[MailSender, Pool]] = []

    async def start(**changes: Any) -> MailSender:
        settings = replace(sender_settings, **changes)
        raw = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=3)
        assert raw is not None
        pool = Pool(raw, 3, 10, 5000)
        sender = MailSender(pool, settings, cleanup=False)
        started.append((sender, pool))
        sender.start()
        return sender

    try:
        yield start
    finally:
        for sender, pool in started:
            await sender.stop()
            await pool.close()


async def enqueue(dsn: str, mails: list[tuple[str, Content]]) -> list[int]:
    """Queue mails in one transaction as the API's login role does."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            return [await mailer.enqueue(conn, to, content) for to, content in mails]
    finally:
        await conn.close()


async def wait_for_rows(
    conn: asyncpg.Connection, query: str, *args: Any, within: float = 10.0
) -> list[asyncpg.Record]:
    """Poll until `query` returns rows."""
    deadline = time.monotonic() + within
    while not (rows := await conn.fetch(query, *args)):
        assert time.monotonic() < deadline, query
        await asyncio.sleep(0.02)
    return rows


def address() -> str:
    return f"mail-{uuid.uuid4().hex[:12]}@example.com"


async def test_without_smtp_host_the_mail_is_logged_and_marked_sent(
    start_sender: Senders,
    outbox: asyncpg.Connection,
    sender_database: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="scriptlabs.mail")
    to = address()
    link = "https://app.scriptlabs.test/reset-password?token=abc_DEF-123"
    [mail_id] = await enqueue(sender_database.dsn, [(to, reset.reset_message(link))])
    await start_sender()
    [row] = await wait_for_rows(
        outbox,
        "select * from scriptlabs_private.mail_outbox where id = $1 and sent_at is not null",
        mail_id,
    )
    assert row["body_text"] is None and row["body_html"] is None
    logged = [r for r in caplog.records if r.name == "scriptlabs.mail"]
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING
    text = logged[0].getMessage()
    assert to in text and "Reset your Script Labs password" in text and link in text


async def test_mail_queued_during_an_smtp_outage_goes_out_once_it_ends(
    start_sender: Senders, outbox: asyncpg.Connection, sender_database: Database
) -> None:
    port = free_port()  # nothing listens there yet
    to = address()
    [mail_id] = await enqueue(sender_database.dsn, [(to, CONTENT)])
    await start_sender(smtp_host="127.0.0.1", smtp_port=port)
    [failed] = await wait_for_rows(
        outbox,
        "select * from scriptlabs_private.mail_outbox"
        " where id = $1 and attempts >= 1 and last_error is not null",
        mail_id,
    )
    assert failed["sent_at"] is None and failed["body_text"] == "Plain body\n"
    sink = SmtpSink(port)
    sink.start()
    try:
        [message] = await sink.wait_for(to)
        assert message["Subject"] == "Hello"
        [row] = await wait_for_rows(
            outbox,
            "select * from scriptlabs_private.mail_outbox where id = $1 and sent_at is not null",
            mail_id,
        )
        assert row["attempts"] >= 2 and row["body_text"] is None
        assert len(sink.to(to)) == 1
    finally:
        sink.stop()


async def test_two_senders_deliver_each_of_many_mails_exactly_once(
    start_sender: Senders,
    outbox: asyncpg.Connection,
    sender_database: Database,
    smtp_sink: SmtpSink,
) -> None:
    mails = [(address(), Content(f"Mail {n}", f"Body {n}\n")) for n in range(20)]
    await start_sender(smtp_host="127.0.0.1", smtp_port=smtp_sink.port)
    await start_sender(smtp_host="127.0.0.1", smtp_port=smtp_sink.port)
    ids = await enqueue(sender_database.dsn, mails)
    await wait_for_rows(
        outbox,
        "select 1 where not exists (select from scriptlabs_private.mail_outbox"
        " where id = any($1::bigint[]) and sent_at is null)",
        ids,
    )
    # marked sent only after the server took it, and never claimed again once marked
    for to, content in mails:
        received = smtp_sink.to(to)
        assert [m["Subject"] for m in received] == [content.subject], to
    attempts = await outbox.fetch(
        "select attempts from scriptlabs_private.mail_outbox where id = any($1::bigint[])", ids
    )
    assert {r["attempts"] for r in attempts} == {1}


async def test_a_leased_mail_is_claimed_by_no_one_else_until_its_lease_ends(
    outbox: asyncpg.Connection, sender_database: Database
) -> None:
    [mail_id] = await enqueue(sender_database.dsn, [(address(), CONTENT)])
    conn = await asyncpg.connect(sender_database.dsn)
    try:
        claim = "select * from scriptlabs_private.claim_mail($1, 100, 60) where id = $2"
        [first] = await conn.fetch(claim, "worker-a", mail_id)
        assert first["attempts"] == 1 and first["body_text"] == "Plain body\n"
        assert await conn.fetch(claim, "worker-b", mail_id) == []
        # worker-a died mid-send: once its lease is over, another worker retries
        await outbox.execute(
            "update scriptlabs_private.mail_outbox set locked_until = now() - interval '1 second'"
            " where id = $1",
            mail_id,
        )
        [second] = await conn.fetch(claim, "worker-b", mail_id)
        assert second["attempts"] == 2
        await conn.execute(mailer.MAIL_SENT, mail_id)
        assert await conn.fetch(claim, "worker-c", mail_id) == []
        row = await outbox.fetchrow(
            "select * from scriptlabs_private.mail_outbox where id = $1", mail_id
        )
        assert row is not None
        assert row["sent_at"] is not None and row["body_text"] is None
    finally:
        await conn.close()


class RefusingSink(SmtpSink):
    """Refuses every recipient for good."""

    async def handle_RCPT(
        self, server: object, session: object, envelope: Any, address: str, options: Any
    ) -> str:
        return "550 No such user here"


async def test_a_recipient_refused_for_good_is_given_up(
    start_sender: Senders, outbox: asyncpg.Connection, sender_database: Database
) -> None:
    sink = RefusingSink()
    sink.start()
    try:
        [mail_id] = await enqueue(sender_database.dsn, [(address(), CONTENT)])
        await start_sender(smtp_host="127.0.0.1", smtp_port=sink.port)
        [row] = await wait_for_rows(
            outbox,
            "select * from scriptlabs_private.mail_outbox where id = $1 and failed_at is not null",
            mail_id,
        )
    finally:
        sink.stop()
    assert row["attempts"] == 1 and row["sent_at"] is None
    assert row["body_text"] is None and row["body_html"] is None
    assert "550" in row["last_error"]


async def test_the_sender_runs_the_token_cleanup(
    sender_settings: Settings, outbox: asyncpg.Connection
) -> None:
    user_id = await outbox.fetchval(
        "insert into auth.users (email) values ($1) returning id", address()
    )
    await outbox.execute(
        "insert into public.password_reset_tokens (user_id, token_hash, expires_at) values"
        " ($1, 'expired', now() - interval '1 minute'), ($1, 'valid', now() + interval '1 hour')",
        user_id,
    )
    raw = await asyncpg.create_pool(sender_settings.database_url, min_size=1, max_size=2)
    assert raw is not None
    pool = Pool(raw, 2, 10, 5000)
    # cleans up at start, then hourly
    sender = MailSender(pool, sender_settings)
    sender.start()
    try:
        await wait_for_rows(
            outbox,
            "select 1 where not exists (select from public.password_reset_tokens"
            " where user_id = $1 and token_hash = 'expired')",
            user_id,
        )
    finally:
        await sender.stop()
        await pool.close()
    kept = await outbox.fetch(
        "select token_hash from public.password_reset_tokens where user_id = $1", user_id
    )
    assert [bytes(r["token_hash"]) for r in kept] == [b"valid"]


async def test_notify_wakes_the_sender_and_a_lost_listener_is_replaced(
    start_sender: Senders, outbox: asyncpg.Connection, sender_database: Database
) -> None:
    listeners = (
        "select pid from pg_stat_activity"
        " where application_name = $1 and datname = current_database() and pid <> $2"
    )
    await start_sender(mail_poll_seconds=60)  # so only a NOTIFY can be this quick
    [first] = await wait_for_rows(outbox, listeners, mailer.LISTENER_NAME, 0)
    delivered = "select 1 from scriptlabs_private.mail_outbox where id = $1 and sent_at is not null"
    [mail_id] = await enqueue(sender_database.dsn, [(address(), CONTENT)])
    await wait_for_rows(outbox, delivered, mail_id, within=5)

    assert await outbox.fetchval("select pg_terminate_backend($1)", first["pid"])
    await wait_for_rows(outbox, listeners, mailer.LISTENER_NAME, first["pid"], within=5)
    [mail_id] = await enqueue(sender_database.dsn, [(address(), CONTENT)])
    await wait_for_rows(outbox, delivered, mail_id, within=5)
