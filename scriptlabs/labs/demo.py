"""The demo catalogue behind `scriptlabs demo-data` (CONTRACT.md section 1).

`load_demo_data` adds demo users `demo-<k>@scriptlabs.test`, numbered on from the highest
existing one, and COPYs their labs into `public.labs` in one transaction as the database
owner (so Row Level Security does not apply). `generate_labs` makes the rows from a
`random.Random` seeded from k alone: the same k, number of labs and day give the same rows,
and lab i of user k has the same id, text, ISBN, rating and status whatever the number of
labs. Only timestamps (spread over the five years before the day of the load, UTC) and the
publication year (never after the lab was added) follow the size and the day.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from bisect import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate, chain
from typing import TypeVar

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from scriptlabs.labs import demo_words as words
from scriptlabs.labs.columns import ALL_COLUMNS

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
       set_config('gin_pending_list_limit', '32MB', true)
"""

ANALYZE_LABS = "analyze public.labs"

T = TypeVar("T")

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


def _zipf_cumulative(n: int) -> list[float]:
    # weights ~1/rank: the natural spread of word frequencies
    return list(accumulate(1.0 / rank for rank in range(1, n + 1)))


def _cumulative(weights: list[float]) -> list[float]:
    return list(accumulate(weights))


def _plural(noun: str) -> str:
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


_CATEGORY_NAMES = [name for name, _ in words.CATEGORIES]
_CATEGORY_KINDS = {name: kind for name, kind in words.CATEGORIES}
_CATEGORY_CUM = _zipf_cumulative(len(_CATEGORY_NAMES))
_ALL_TOPICS = [topic for group in words.TOPICS.values() for topic in group]
_TOPIC_CAPITALISED = {topic: _capitalised(topic) for topic in _ALL_TOPICS}
_PLURALS = {noun: _plural(noun) for noun in words.TITLE_NOUNS}
_NOTE_NOUN_CUM = _zipf_cumulative(len(words.NOTE_NOUNS))
_NOTE_ADJECTIVE_CUM = _zipf_cumulative(len(words.NOTE_ADJECTIVES))
_NOTE_VERB_CUM = _zipf_cumulative(len(words.NOTE_VERBS))
# {n0} {n1} {n2} {a0} {a1} {v0} become positional fields, cheaper to fill.
_NOTE_TEMPLATES = tuple(
    template.replace("{n0}", "{0}")
    .replace("{n1}", "{1}")
    .replace("{n2}", "{2}")
    .replace("{a0}", "{3}")
    .replace("{a1}", "{4}")
    .replace("{v0}", "{5}")
    for template in words.NOTE_TEMPLATES
)
_SENTENCE_COUNTS = (1, 2, 3, 4, 5)
_SENTENCES_CUM = _cumulative([30, 30, 20, 12, 8])
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


def generate_labs(
    k: int, user_id: uuid.UUID, count: int, *, anchor: datetime
) -> Iterator[LabRecord]:
    """Yield the `count` labs of demo user `k`, oldest first, columns as in LAB_COLUMNS.

    created_at spreads evenly over the five years before `anchor` (each lab in its own
    slot, so no two are equal) and updated_at falls between created_at and `anchor`. Every
    lab draws from the user's random stream the same way whatever `count` is, so lab i of
    user k is the same in a catalogue of any size, but for its timestamps and publication
    year. `anchor` must be timezone-aware.
    """
    rng = _user_random(k)
    rand = rng.random
    choices = rng.choices
    getrandbits = rng.getrandbits
    expovariate = rng.expovariate

    # rng.choice and one-item rng.choices cost a few calls each; these are one
    def pick(seq: Sequence[T]) -> T:
        return seq[int(rand() * len(seq))]

    def pick_weighted(seq: Sequence[T], cum: Sequence[float]) -> T:
        return seq[bisect(cum, rand() * cum[-1])]

    span_us = SPAN_YEARS * 365 * 86_400 * 1_000_000
    step = span_us / max(count, 1)
    start = anchor - timedelta(microseconds=span_us)
    first_names = words.FIRST_NAMES
    last_names = words.LAST_NAMES
    title_nouns = words.TITLE_NOUNS

    for i in range(count):
        # a category, then a title that suits it
        picked = pick_weighted(_CATEGORY_NAMES, _CATEGORY_CUM)
        kind = _CATEGORY_KINDS[picked]
        category = None if rand() < 0.10 else picked
        if kind == "fiction":
            title = pick(words.FICTION_TITLES).format(
                pick(words.TITLE_ADJECTIVES),
                pick(title_nouns),
                pick(title_nouns),
                pick(words.PLACES),
                _PLURALS[pick(title_nouns)],
                pick(first_names),
            )
        else:
            topic = pick(words.TOPICS[kind])
            title = pick(words.NONFICTION_TITLES).format(
                topic,
                _TOPIC_CAPITALISED[topic],
                pick(_ALL_TOPICS),
                pick(words.TITLE_ADJECTIVES),
            )
        if rand() < 0.06:
            title += pick(words.SERIES_SUFFIXES)

        # mostly "First Last", some with an initial, a few pairs
        shape = rand()
        if shape < 0.86:
            author = f"{pick(first_names)} {pick(last_names)}"
        elif shape < 0.95:
            author = f"{pick(first_names)} {chr(65 + getrandbits(4))}. {pick(last_names)}"
        else:
            author = (
                f"{pick(first_names)} {pick(last_names)} and {pick(first_names)} {pick(last_names)}"
            )

        # one slot of the span per lab, jittered inside it
        created_us = int((i + rand()) * step)
        created_at = start + timedelta(microseconds=created_us)
        if rand() < 0.45:
            updated_at = created_at
        else:  # edited later, mostly soon after
            updated_at = created_at + timedelta(
                microseconds=int((span_us - created_us) * rand() ** 3)
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

        status = pick_weighted(_STATUSES, _STATUS_CUM)
        rating: int | None = None
        if rand() < _RATED_SHARE[status]:
            rating = pick_weighted(_RATINGS, _RATING_CUM)

        notes: str | None = None
        if rand() < 0.70:
            sentences = pick_weighted(_SENTENCE_COUNTS, _SENTENCES_CUM)
            nouns = choices(words.NOTE_NOUNS, cum_weights=_NOTE_NOUN_CUM, k=3 * sentences)
            adjectives = choices(
                words.NOTE_ADJECTIVES, cum_weights=_NOTE_ADJECTIVE_CUM, k=2 * sentences
            )
            verbs = choices(words.NOTE_VERBS, cum_weights=_NOTE_VERB_CUM, k=sentences)
            notes = " ".join(
                pick(_NOTE_TEMPLATES).format(
                    nouns[3 * j],
                    nouns[3 * j + 1],
                    nouns[3 * j + 2],
                    adjectives[2 * j],
                    adjectives[2 * j + 1],
                    verbs[j],
                )
                for j in range(sentences)
            )

        # version 4 layout over the seeded bits, so the ids look like any others
        bits = getrandbits(128) & ~(0xF000 << 64) & ~(0xC000 << 48)
        lab_id = f"{bits | (0x4000 << 64) | (0x8000 << 48):032x}"

        yield (
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
    password: str = DEFAULT_PASSWORD,
    password_hash: str,
    now: datetime | None = None,
) -> list[DemoUser]:
    """Add `users` demo users sharing `labs` labs, in one transaction; return them.

    Connects to `admin_dsn` as the database owner. `password_hash` is the argon2id hash of
    `password` (checked, so the two cannot disagree). `now` anchors the timestamps (default:
    today, 00:00 UTC). Nothing is left behind when it fails.
    """
    if users < 1:
        raise ValueError("users must be at least 1")
    if labs < 0:
        raise ValueError("labs must not be negative")
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    await asyncio.to_thread(_check_password, password, password_hash)
    anchor = now or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = spread(labs, users)

    conn = await asyncpg.connect(admin_dsn)
    try:
        async with conn.transaction():
            await conn.execute(LOCK_DEMO_NUMBERS, ADVISORY_LOCK_KEY)
            await conn.fetchval(TUNE_TRANSACTION)
            highest = await conn.fetchval(HIGHEST_DEMO_NUMBER)
            first = int(highest or 0) + 1
            added = [
                DemoUser(email=email, id=demo_user_id(email), labs=count)
                for email, count in zip(
                    (demo_email(k) for k in range(first, first + users)), counts, strict=True
                )
            ]
            await conn.execute(
                INSERT_USERS,
                [user.id for user in added],
                [user.email for user in added],
                password_hash,
            )
            if labs:
                # one COPY for all users, streamed: rows are made while the server writes the
                # previous ones, and never all held in memory
                records = chain.from_iterable(
                    generate_labs(first + n, user.id, user.labs, anchor=anchor)
                    for n, user in enumerate(added)
                )
                await conn.copy_records_to_table(
                    "labs",
                    schema_name="public",
                    columns=LAB_COLUMNS,
                    records=records,
                )
            await conn.execute(ANALYZE_LABS)
    finally:
        await conn.close()
    return added
