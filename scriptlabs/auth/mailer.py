"""The mail outbox and its background sender.

Mail is queued by SQL (scriptlabs_private.enqueue_mail, in the transaction of the change
that causes it) and delivered by a MailSender running in every API process. A sender claims
a batch with `for update skip locked` and a lease, so several processes never send the same
message; one that dies mid-send leaves its lease to expire and another retries (the only
case where a message may go out twice). Failed attempts back off exponentially up to
MAIL_RETRY_MAX_SECONDS. Senders wake on NOTIFY scriptlabs_mail, or every MAIL_POLL_SECONDS
(behind a transaction-mode PgBouncer, where LISTEN does not work, polling alone carries it).

Without SMTP_HOST (development) a message is logged at WARNING on `scriptlabs.mail`, link
and all, and marked sent, so a person can finish a reset by hand; with JSON logs (a server's,
shipped and kept) it is dropped with a line that holds no link.

The same task runs the hourly token clean-up (public.cleanup_expired_tokens) unless pg_cron
does it in the database; an advisory lock keeps concurrent processes from running it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
import asyncpg

from scriptlabs.config import Settings
from scriptlabs.db.operation import Pool
from scriptlabs.telemetry import metrics

log = logging.getLogger("scriptlabs.mail")

CHANNEL = "scriptlabs_mail"
BATCH_SIZE = 10
SMTP_TIMEOUT = 10.0  # seconds, per SMTP command
# a batch is marked message by message; the lease covers a whole batch of slow sends
LEASE_SECONDS = 120
STOP_GRACE = 5.0  # seconds a stopping sender may spend finishing its batch
CLEANUP_INTERVAL = 3600.0
CLEANUP_LOCK_KEY = 0x5C_1AB5_0008  # names the clean-up's advisory lock in pg_locks
LISTENER_NAME = "scriptlabs mail listener"  # application_name of the LISTEN connection

ENQUEUE_MAIL = "select scriptlabs_private.enqueue_mail($1, $2, $3, $4, $5)"
CLAIM_MAIL = "select * from scriptlabs_private.claim_mail($1, $2, $3)"
MAIL_SENT = "select scriptlabs_private.mail_sent($1)"
MAIL_FAILED = "select scriptlabs_private.mail_failed($1, $2, $3)"
HAS_PG_CRON = "select exists (select from pg_catalog.pg_extension where extname = 'pg_cron')"
# null when another process holds the lock (it is cleaning up right now)
CLEANUP_IF_FREE = """
select case
  when pg_catalog.pg_try_advisory_xact_lock($1) then public.cleanup_expired_tokens()
end
"""


@dataclass(frozen=True, slots=True)
class Content:
    """What a message says: its subject, plain-text body and optional HTML body."""

    subject: str
    body_text: str
    body_html: str | None = None


@dataclass(frozen=True, slots=True)
class QueuedMail:
    """A message claimed from the outbox."""

    id: int
    to_address: str
    content: Content
    attempts: int

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> QueuedMail:
        content = Content(row["subject"], row["body_text"] or "", row["body_html"])
        return cls(row["id"], row["to_address"], content, row["attempts"])


async def enqueue(
    conn: asyncpg.Connection, to_address: str, content: Content, *, kind: str = "notice"
) -> int:
    """Queue a message in the caller's transaction (as the login role); return its id."""
    mail_id: int = await conn.fetchval(
        ENQUEUE_MAIL, to_address, content.subject, content.body_text, content.body_html, kind
    )
    return mail_id


def compose(settings: Settings, to_address: str, content: Content) -> EmailMessage:
    """The MIME message: a plain-text part, and an HTML alternative when there is one."""
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to_address
    message["Subject"] = content.subject
    message["Date"] = email.utils.formatdate(usegmt=True)
    # the sender's domain, never socket.getfqdn(): that may wait on DNS
    domain = email.utils.parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = email.utils.make_msgid(domain=domain)
    message.set_content(content.body_text)
    if content.body_html is not None:
        message.add_alternative(content.body_html, subtype="html")
    return message


def retry_delay(attempts: int, ceiling: int) -> int:
    """Seconds before the next attempt after `attempts` failed ones: 2, 4, 8, ... ≤ ceiling."""
    backoff: int = 2 ** min(attempts, 30)
    return max(1, min(ceiling, backoff))


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying is pointless: every recipient was refused with a 5xx reply."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(r.code >= 500 for r in exc.recipients)
    return isinstance(exc, aiosmtplib.SMTPRecipientRefused) and bool(exc.code >= 500)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


class MailSender:
    """Delivers the outbox in the background: `start()` at start-up, `stop()` at shut-down."""

    def __init__(
        self,
        pool: Pool,
        settings: Settings,
        *,
        worker: str | None = None,
        cleanup: bool = True,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.cleanup = cleanup
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._listener: asyncpg.Connection | None = None
        self._listener_failed = False
        self._database_failed = False  # the last round could not reach the database

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"mail sender {self.worker}")

    async def stop(self) -> None:
        """Let the current batch finish (a few seconds at most), then end the task."""
        task, self._task = self._task, None
        self._stopping = True
        self._wake.set()
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_GRACE)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._close_listener()

    # -- the loop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_cleanup = loop.time() if self.cleanup else float("inf")
        while not self._stopping:
            await self._ensure_listener()
            self._wake.clear()  # a NOTIFY from now on starts another round
            claimed = 0
            try:
                claimed = await self.deliver_due()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if not self._database_failed:  # once per outage, not at every poll
                    log.warning("mail sender: database unavailable, retrying: %s", exc)
                self._database_failed = True
            except Exception:
                log.exception("mail sender %s: delivery round failed", self.worker)
            else:
                if self._database_failed:
                    log.info("mail sender: database available again")
                self._database_failed = False
            if loop.time() >= next_cleanup and not self._stopping:
                next_cleanup = loop.time() + CLEANUP_INTERVAL
                if not await self._run_cleanup():
                    next_cleanup = float("inf")
            if claimed >= BATCH_SIZE or self._stopping:
                continue  # a full batch: more may be due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.mail_poll_seconds)

    async def deliver_due(self) -> int:
        """One round: claim due messages, send them, record the outcome; how many were claimed."""
        async with self.pool.connection() as conn:
            rows = await conn.fetch(CLAIM_MAIL, self.worker, BATCH_SIZE, LEASE_SECONDS)
        mails = [QueuedMail.from_record(row) for row in rows]
        if not mails:
            return 0
        if self.settings.smtp_host is None:
            for mail in mails:
                if self.settings.log_format == "json":
                    # JSON logs are shipped and kept: a reset link must not reach them
                    log.warning("SMTP_HOST is not set: mail %s dropped unsent", mail.id)
                    await self._mark(MAIL_SENT, mail.id)
                    continue
                log.warning(
                    "SMTP_HOST is not set, so this mail is logged instead of sent:\n"
                    "To: %s\nSubject: %s\n\n%s",
                    mail.to_address,
                    mail.content.subject,
                    mail.content.body_text,
                )
                await self._mark(MAIL_SENT, mail.id)
            return len(mails)
        await self._send(mails)
        return len(mails)

    async def _send(self, mails: list[QueuedMail]) -> None:
        settings = self.settings
        implicit_tls = settings.smtp_port == 465
        # STARTTLS when the server offers it; required when there are credentials to protect
        start_tls: bool | None = None
        if implicit_tls or not settings.smtp_starttls:
            start_tls = False
        elif settings.smtp_user:
            start_tls = True
        smtp = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_user,
            password=settings.smtp_password,
            use_tls=implicit_tls,
            start_tls=start_tls,
            timeout=SMTP_TIMEOUT,
        )
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("mail: cannot reach %s:%s: %s", settings.smtp_host, settings.smtp_port, exc)
            for mail in mails:
                await self._failed(mail, exc)
            return
        try:
            for mail in mails:
                try:
                    await smtp.send_message(compose(settings, mail.to_address, mail.content))
                except (aiosmtplib.SMTPException, OSError) as exc:
                    # the id, not the address: logs carry no email (telemetry/logs.py)
                    # (an SMTP refusal's text may name the recipient: its type and code only)
                    log.warning(
                        "mail %s not sent: %s %s",
                        mail.id,
                        type(exc).__name__,
                        getattr(exc, "code", ""),
                    )
                    await self._failed(mail, exc)
                else:
                    await self._mark(MAIL_SENT, mail.id)
                    metrics.count_mail("sent")
        finally:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()

    async def _failed(self, mail: QueuedMail, exc: BaseException) -> None:
        metrics.count_mail("failed")
        retry = None if is_permanent(exc) else self.retry_seconds(mail.attempts)
        await self._mark(MAIL_FAILED, mail.id, _describe(exc), retry)

    def retry_seconds(self, attempts: int) -> int:
        return retry_delay(attempts, self.settings.mail_retry_max_seconds)

    async def _mark(self, query: str, *args: object) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(query, *args)

    # -- wake-ups

    async def _ensure_listener(self) -> None:
        """A connection of its own LISTENing on the channel; made again when it was lost."""
        if self._listener is not None and not self._listener.is_closed():
            return
        await self._close_listener()
        dsn = self.settings.database_url
        try:
            # one statement (LISTEN), once: no cache, which behind a transaction-mode PgBouncer
            # would leave it prepared, named, on a server connection other clients share
            conn = await asyncpg.connect(
                dsn,
                timeout=SMTP_TIMEOUT,
                statement_cache_size=0,
                server_settings={"application_name": LISTENER_NAME},
            )
            await conn.add_listener(CHANNEL, self._notified)
            # lost: run a round at once, which connects again, rather than at the next poll
            conn.add_termination_listener(self._notified)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            if not self._listener_failed:  # once per outage, not at every poll
                log.warning("mail sender: cannot LISTEN (polling meanwhile): %s", exc)
            self._listener_failed = True
            return
        self._listener, self._listener_failed = conn, False

    def _notified(self, *_args: object) -> None:
        self._wake.set()

    async def _close_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await conn.close(timeout=2)

    # -- clean-up

    async def _run_cleanup(self) -> bool:
        """Run public.cleanup_expired_tokens() unless pg_cron does; False: not our job."""
        try:
            async with self.pool.connection() as conn:
                if await conn.fetchval(HAS_PG_CRON):
                    log.info("token clean-up is left to pg_cron")
                    return False
                deleted = await conn.fetchval(CLEANUP_IF_FREE, CLEANUP_LOCK_KEY)
        except Exception:
            log.exception("token clean-up failed")
            return True
        if deleted:
            log.info("token clean-up deleted %d rows", deleted)
        return True
