"""The demo catalogue behind `scriptlabs demo-data` (CONTRACT.md section 1).

`load_demo_data` adds demo users `demo-<k>@scriptlabs.test`, numbered on from the highest
existing one, and COPYs their labs into `public.labs` in one transaction as the database
owner (so Row Level Security does not apply). The labs of all the users it adds are written as
a live service would have received them: one stream in created_at order over the five years
before the day of the load, the users' labs mixed in it (each user's spread evenly over the
span), never one user's labs in a block.

Each user's labs come from a `random.Random` seeded from k alone: lab i of user k has the same
id, text, ISBN, rating and status whatever the number of labs and whoever else is loaded with
it; only its timestamps and publication year (never after the lab was added) follow its place
in the stream and the day. The text (demo_text.py) has a long-tailed vocabulary: for
benchmarks, `term_for_share(share)` names a word expected in about that share of any demo
user's labs (1/10, 1/175, 1/150,000: common, medium, rare), `keyword_share(rank)` the share of
the keyword of a frequency rank.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import uuid
from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate, repeat

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from scriptlabs.labs.columns import ALL_COLUMNS
from scriptlabs.labs.demo_text import keyword as keyword
from scriptlabs.labs.demo_text import keyword_share as keyword_share
from scriptlabs.labs.demo_text import term_for_share as term_for_share
from scriptlabs.labs.demo_text import text_writer

EMAIL_DOMAIN = "scriptlabs.test"
DEFAULT_PASSWORD = "demo-password"  # contract: the default of --password

# uuid5 namespace of demo user ids: the same email always gets the same id.
USER_NAMESPACE = uuid.UUID("5c1d6a7e-3f0b-4e8a-9b6d-2a4c8e0f1b37")

# Serialises concurrent loads, so two of them never pick the same demo numbers.
ADVISORY_LOCK_KEY = 0x5C_D3_40_DA_7A  # any fixed bigint

SPAN_YEARS = 5
OLDEST_PUBLICATION_YEAR = 1850

# the owner, then every column of the field table (LabRecord and generate_labs follow it)
LAB_COLUMNS = ("user_id", *ALL_COLUMNS)

LOCK_DEMO_NUMBERS = "select pg_advisory_xact_lock($1)"

HIGHEST_DEMO_NUMBER = """
select max(substring(lower(email) from '^demo-([0-9]+)@scriptlabs[.]test$')::numeric)
from auth.users
where lower(email) like 'demo-%@scriptlabs.test'
"""

INSERT_USERS = """
insert into auth.users (id, email, encrypted_password, email_confirmed_at)
select id, email, $3, now()
from unnest($1::uuid[], $2::text[]) as u(id, email)
"""

# A million labs take a minute or two, whatever timeout the owner role may carry. Demo rows
# are cheap to make again: no need to wait for the commit's WAL flush. A GIN index on labs
# (if one is added) inserts through its pending list, which is flushed in batches of
# gin_pending_list_limit, sorted in work_mem: larger batches, fewer flushes.
TUNE_TRANSACTION = """
select set_config('statement_timeout', '0', true),
       set_config('synchronous_commit', 'off', true),
       set_config('work_mem', '64MB', true),
       set_config('gin_pending_list_limit', '32MB', true),
       -- no labEvents for generated rows: a million would fill the notification queue
       set_config('scriptlabs.lab_events', 'off', true)
"""

ANALYZE_LABS = "analyze public.labs"

# A big load goes faster without the text-search index, built again afterwards: added row by
# row, a rum index took most of a 1,200,000-lab load (more than seven minutes, where building
# it took under a minute). The index is dropped and made again inside the load's transaction,
# so nobody ever sees labs without it; other writers wait for the load instead.
BULK_LABS = 100_000
SEARCH_INDEXES = """
select c.relname as name, pg_get_indexdef(i.indexrelid) as definition,
       obj_description(i.indexrelid, 'pg_class') as comment
from pg_index i
join pg_class c on c.oid = i.indexrelid
join pg_am a on a.oid = c.relam
where i.indrelid = 'public.labs'::regclass and a.amname in ('rum', 'gin')
"""
BUILD_INDEXES = "select set_config('maintenance_work_mem', '512MB', true)"

LabRecord = tuple[
    uuid.UUID,  # user_id
    str,  # id (32 hex digits; asyncpg encodes it without building a uuid.UUID)
    str,  # title
    str,  # author
    str | None,  # category
    int | None,  # publication_year
    str | None,  # isbn
    int | None,  # rating
    str,  # reading_status
    str | None,  # notes
    str | None,  # cover_url
    datetime,  # created_at
    datetime,  # updated_at
]


@dataclass(frozen=True, slots=True)
class DemoUser:
    """One demo user added by `load_demo_data`, and how many labs it got."""

    email: str
    id: uuid.UUID
    labs: int


def demo_email(k: int) -> str:
    return f"demo-{k}@{EMAIL_DOMAIN}"


def demo_user_id(email: str) -> uuid.UUID:
    return uuid.uuid5(USER_NAMESPACE, email.lower())


def spread(labs: int, users: int) -> list[int]:
    """`labs` split over `users` as evenly as can be, the first users taking the remainder."""
    base, extra = divmod(labs, users)
    return [base + (1 if i < extra else 0) for i in range(users)]


def _cumulative(weights: list[float]) -> list[float]:
    total = sum(weights)
    return [c / total for c in accumulate(weights)]


_RATINGS = (1, 2, 3, 4, 5)
_RATING_CUM = _cumulative([5, 10, 25, 35, 25])
_STATUSES = ("read", "reading", "to_read")
_STATUS_CUM = _cumulative([55, 15, 30])
_RATED_SHARE = {"read": 0.9, "reading": 0.4, "to_read": 0.15}  # ~60 % rated in all

# ISBN-13 check digit: weights 1,3,1,3,... over 12 digits, taken three digits at a time.
_WEIGHTED_EVEN = [(d // 100) + 3 * (d // 10 % 10) + (d % 10) for d in range(1000)]
_WEIGHTED_ODD = [3 * (d // 100) + (d // 10 % 10) + 3 * (d % 10) for d in range(1000)]


def isbn13(prefix: int, body: int) -> str:
    """The ISBN-13 of a 978/979 `prefix` and a nine-digit `body`, with its check digit."""
    total = (
        _WEIGHTED_EVEN[prefix]
        + _WEIGHTED_ODD[body // 1_000_000]
        + _WEIGHTED_EVEN[body // 1000 % 1000]
        + _WEIGHTED_ODD[body % 1000]
    )
    return f"{prefix}{body:09d}{(10 - total % 10) % 10}"


def _user_random(k: int) -> random.Random:
    return random.Random(f"scriptlabs demo user {k}")


def _user_labs(
    k: int, user_id: uuid.UUID, *, start: datetime, step_us: float, anchor: datetime
) -> Callable[[int], LabRecord]:
    """A function giving user k's next lab, written in `slot` of the stream (slot j of the
    stream begins j * step_us after `start`)."""
    rng = _user_random(k)
    rand = rng.random
    getrandbits = rng.getrandbits
    expovariate = rng.expovariate
    write_text = text_writer(rand)
    anchor_us = (anchor - start) // timedelta(microseconds=1)

    def next_lab(slot: int) -> LabRecord:
        title, author, category, notes = write_text()

        # jittered inside its slot, so created_at grows along the stream
        created_us = int((slot + rand()) * step_us)
        created_at = start + timedelta(microseconds=created_us)
        if rand() < 0.45:
            updated_at = created_at
        else:  # edited later, mostly soon after
            updated_at = created_at + timedelta(
                microseconds=int((anchor_us - created_us) * rand() ** 3)
            )

        year: int | None = None
        if rand() >= 0.10:
            newest = created_at.year
            oldest = newest - OLDEST_PUBLICATION_YEAR
            if rand() < 0.15:  # classics, from any year since 1850
                year = newest - int(rand() * (oldest + 1))
            else:  # mostly recent: a dozen years old on average
                year = newest - min(int(expovariate(1 / 12)), oldest)

        isbn: str | None = None
        cover_url: str | None = None
        if rand() < 0.70:
            isbn = isbn13(978 if rand() < 0.9 else 979, int(rand() * 1_000_000_000))
            if rand() < 0.6:
                cover_url = f"https://covers.example.org/{isbn}.jpg"

        status = _STATUSES[bisect(_STATUS_CUM, rand())]
        rating: int | None = None
        if rand() < _RATED_SHARE[status]:
            rating = _RATINGS[bisect(_RATING_CUM, rand())]

        # version 4 layout over the seeded bits, so the ids look like any others
        bits = getrandbits(128) & ~(0xF000 << 64) & ~(0xC000 << 48)
        lab_id = f"{bits | (0x4000 << 64) | (0x8000 << 48):032x}"

        return (
            user_id,
            lab_id,
            title,
            author,
            category,
            year,
            isbn,
            rating,
            status,
            notes,
            cover_url,
            created_at,
            updated_at,
        )

    return next_lab


def schedule(counts: Sequence[int], phases: Sequence[float]) -> Iterator[int]:
    """The index of the user of each slot of the stream, in order: user u's i-th lab comes at
    (i + phases[u]) / counts[u] of the span, so each user's labs spread evenly over it and
    everyone's are mixed."""
    live = [u for u, count in enumerate(counts) if count > 0]
    if len(live) == 1:
        yield from repeat(live[0], counts[live[0]])
        return
    heap = [(phases[u] / counts[u], u, 0) for u in live]
    heapq.heapify(heap)
    while heap:
        _, u, i = heap[0]
        yield u
        i += 1
        if i < counts[u]:
            heapq.heapreplace(heap, ((i + phases[u]) / counts[u], u, i))
        else:
            heapq.heappop(heap)


def generate_labs(
    users: Sequence[tuple[int, uuid.UUID, int]], *, anchor: datetime
) -> Iterator[LabRecord]:
    """Yield the labs of `users` ((k, id, number of labs) each), columns as in LAB_COLUMNS,
    in the order a service would have received them: created_at growing, users mixed.

    The stream spans the five years before `anchor` (timezone-aware), one slot per lab;
    updated_at falls between created_at and `anchor`.
    """
    total = sum(count for _, _, count in users)
    span = timedelta(days=SPAN_YEARS * 365)
    start = anchor - span
    step_us = span / timedelta(microseconds=1) / max(total, 1)
    writers = [
        _user_labs(k, user_id, start=start, step_us=step_us, anchor=anchor)
        for k, user_id, _ in users
    ]
    phases = [random.Random(f"scriptlabs demo phase {k}").random() for k, _, _ in users]
    for slot, u in enumerate(schedule([count for _, _, count in users], phases)):
        yield writers[u](slot)


def _counted(
    records: Iterator[LabRecord], progress: Callable[[int, str], None] | None
) -> Iterator[LabRecord]:
    """`records`, telling `progress` how many went by (every 1,000)."""
    if progress is None:
        yield from records
        return
    for done, record in enumerate(records, 1):
        yield record
        if done % 1000 == 0:
            progress(done, "")


def quote_literal(text: str) -> str:
    """A SQL string literal (COMMENT takes no parameter)."""
    return "'" + text.replace("'", "''") + "'"


def _check_password(password: str, password_hash: str) -> None:
    try:
        PasswordHasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        raise ValueError("password_hash is not a hash of password") from None


async def load_demo_data(
    admin_dsn: str,
    *,
    labs: int,
    users: int = 1,
    others: int = 0,
    others_labs: int = 0,
    password: str = DEFAULT_PASSWORD,
    password_hash: str,
    now: datetime | None = None,
    bulk: int = BULK_LABS,
    progress: Callable[[int, str], None] | None = None,
) -> list[DemoUser]:
    """Add `users` demo users sharing `labs` labs, then `others` more with `others_labs` labs
    each, in one transaction, their labs interleaved; return them in number order.

    Connects to `admin_dsn` as the database owner. `password_hash` is the argon2id hash of
    `password` (checked, so the two cannot disagree). `now` anchors the timestamps (default:
    today, 00:00 UTC). Nothing is left behind when it fails. From `bulk` labs on, the
    text-search index is built again after the rows instead of row by row. `progress`, when
    given, is called with the labs written so far and the step (a progress line).
    """
    if users < 1:
        raise ValueError("users must be at least 1")
    if labs < 0 or others < 0 or others_labs < 0:
        raise ValueError("labs, others and others_labs must not be negative")
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    await asyncio.to_thread(_check_password, password, password_hash)
    anchor = now or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = spread(labs, users) + [others_labs] * others

    conn = await asyncpg.connect(admin_dsn)
    try:
        async with conn.transaction():
            await conn.execute(LOCK_DEMO_NUMBERS, ADVISORY_LOCK_KEY)
            await conn.fetchval(TUNE_TRANSACTION)
            highest = await conn.fetchval(HIGHEST_DEMO_NUMBER)
            first = int(highest or 0) + 1
            numbers = range(first, first + len(counts))
            added = [
                DemoUser(email=demo_email(k), id=demo_user_id(demo_email(k)), labs=count)
                for k, count in zip(numbers, counts, strict=True)
            ]
            await conn.execute(
                INSERT_USERS,
                [user.id for user in added],
                [user.email for user in added],
                password_hash,
            )
            rebuilt = await conn.fetch(SEARCH_INDEXES) if sum(counts) >= bulk else []
            for index in rebuilt:
                await conn.execute(f'drop index public."{index["name"]}"')
            if sum(counts):
                # one COPY for all users, streamed: rows are made while the server writes the
                # previous ones, and never all held in memory
                await conn.copy_records_to_table(
                    "labs",
                    schema_name="public",
                    columns=LAB_COLUMNS,
                    records=_counted(
                        generate_labs(
                            [(k, u.id, u.labs) for k, u in zip(numbers, added, strict=True)],
                            anchor=anchor,
                        ),
                        progress,
                    ),
                )
            if progress is not None:
                progress(sum(counts), "building indexes" if rebuilt else "analysing")
            if rebuilt:
                await conn.execute(BUILD_INDEXES)
            for index in rebuilt:
                await conn.execute(index["definition"])
                if index["comment"] is not None:
                    await conn.execute(
                        f'comment on index public."{index["name"]}" is '
                        f"{quote_literal(index['comment'])}"
                    )
            await conn.execute(ANALYZE_LABS)
    finally:
        await conn.close()
    return added
