"""`scriptlabs demo-data`: users and labs that a person can sign in to, deterministic, with
the long-tailed text and interleaved rows of a live service."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
import uuid
from collections.abc import AsyncIterator
from itertools import pairwise

import asyncpg
import pytest

from scriptlabs.auth.passwords import make_hasher
from scriptlabs.cli import main
from scriptlabs.labs import demo_text, demo_words
from scriptlabs.labs.demo import (
    DEFAULT_PASSWORD,
    SEARCH_INDEXES,
    DemoUser,
    generate_labs,
    keyword_share,
    load_demo_data,
    term_for_share,
)
from tests.conftest import CHEAP_ARGON2, Api, Database, create_database

ANCHOR = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SPAN = dt.timedelta(days=5 * 365)
CATALOGUE_LABS = 20_000  # the user whose text is measured, among OTHERS users
OTHERS, OTHERS_LABS = 9, 100

ROWS = """
select user_id, id, title, author, category, publication_year, isbn, rating, reading_status,
       notes, cover_url, created_at, updated_at
from public.labs
where user_id = any($1::uuid[])
order by created_at
"""


def _hash() -> str:
    return make_hasher(CHEAP_ARGON2).hash(DEFAULT_PASSWORD)


def _user(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def test_the_same_users_give_the_same_labs() -> None:
    users = [(7, _user(7), 50), (8, _user(8), 20)]
    first = list(generate_labs(users, anchor=ANCHOR))
    assert first == list(generate_labs(users, anchor=ANCHOR))
    assert len({lab[1] for lab in first}) == 70  # ids
    other = list(generate_labs([(9, _user(7), 50), (8, _user(8), 20)], anchor=ANCHOR))
    assert [lab[2] for lab in first] != [lab[2] for lab in other]


def test_a_users_labs_do_not_depend_on_who_is_loaded_with_it() -> None:
    def content(labs: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
        # id, title, author, category, isbn, rating, status, notes, cover: not the timestamps
        return [lab[1:5] + lab[6:11] for lab in labs if lab[0] == _user(7)]

    alone = list(generate_labs([(7, _user(7), 40)], anchor=ANCHOR))
    mixed = list(generate_labs([(7, _user(7), 40), (8, _user(8), 30)], anchor=ANCHOR))
    assert content(alone) == content(mixed)


def test_labs_come_in_created_at_order_with_the_users_mixed() -> None:
    users = [(1, _user(1), 1000), *((k, _user(k), 10) for k in range(2, 12))]
    labs = list(generate_labs(users, anchor=ANCHOR))
    created = [lab[11] for lab in labs]
    assert created == sorted(created) and len(set(created)) == len(created)
    assert created[0] >= ANCHOR - SPAN and created[-1] < ANCHOR
    assert all(lab[11] <= lab[12] <= ANCHOR for lab in labs)  # updated_at
    owners = [lab[0] for lab in labs]
    switches = sum(a != b for a, b in pairwise(owners))
    assert switches >= 190  # each of the 100 small users' labs sits between the big one's
    for k in range(2, 12):  # and each small user's labs spread over the five years
        mine = [lab[11] for lab in labs if lab[0] == _user(k)]
        assert mine[-1] - mine[0] > SPAN * 0.8


def test_titles_and_notes_put_a_before_consonants_and_an_before_vowels() -> None:
    labs = list(generate_labs([(3, _user(3), 3000)], anchor=ANCHOR))
    text = "\n".join(f"{lab[2]}\n{lab[9] or ''}" for lab in labs)
    assert re.findall(r"\b[Aa]n [A-Za-z]+", text)  # both occur
    assert not re.findall(r"\b[Aa] [AEIOaeio]\w*", text)
    assert not re.findall(r"\b[Aa]n [b-df-gj-np-tv-zB-DF-GJ-NP-TV-Z]\w*", text)


def test_term_for_share_finds_a_keyword_of_about_that_share() -> None:
    for share in (1 / 10, 1 / 175, 1 / 1000, 1 / 150_000):
        term = term_for_share(share)
        rank = demo_text.KEYWORDS.index(term) + 1
        assert share / 1.2 < keyword_share(rank) < share * 1.2
    shares = [keyword_share(rank) for rank in range(1, len(demo_text.KEYWORDS) + 1, 97)]
    assert shares == sorted(shares, reverse=True)
    assert keyword_share(len(demo_text.KEYWORDS)) < 5e-6  # a handful in a million


async def test_keywords_have_lexemes_of_their_own(admin: asyncpg.Connection) -> None:
    """Each keyword is one lexeme of the English stemmer, its plural the same one, shared by
    no other keyword and no other word of the demo text: so keyword_share holds."""
    keywords = list(demo_text.KEYWORDS)
    rows = await admin.fetch(
        "select ts_lexize('english_stem', w) as lexeme, ts_lexize('english_stem', p) as plural"
        " from unnest($1::text[], $2::text[]) as u(w, p)",
        keywords,
        [demo_text.plural(w) for w in keywords],
    )
    lexemes = [row["lexeme"] for row in rows]
    assert all(lexeme and len(lexeme) == 1 for lexeme in lexemes)  # no stop word
    assert [row["plural"] for row in rows] == lexemes
    assert len({lexeme[0] for lexeme in lexemes}) == len(keywords)
    field = re.compile(r"\{\w+\}")
    others = [
        *(
            field.sub(" ", t)
            for t in (
                *demo_words.NOTE_TEMPLATES,
                *demo_words.FICTION_TITLES,
                *demo_words.NONFICTION_TITLES,
                *demo_words.SERIES_SUFFIXES,
            )
        ),
        *(name for name, _ in demo_words.CATEGORIES),
        *(topic for topics in demo_words.TOPICS.values() for topic in topics),
        *demo_words.FIRST_NAMES,
        *demo_text.SURNAMES,
        *demo_text.PLACE_NAMES,
        *demo_words.TITLE_ADJECTIVES,
        *demo_words.NOTE_ADJECTIVES,
        *demo_words.REVIEW_NOUNS,
        *demo_words.NOTE_VERBS,
    ]
    shared = await admin.fetchval(
        "select array_agg(distinct l) from unnest($1::text[]) as t,"
        " unnest(tsvector_to_array(to_tsvector('english', t))) as l"
        " where l = any($2::text[])",
        others,
        [lexeme[0] for lexeme in lexemes],
    )
    assert shared is None


@pytest.fixture(scope="module")
async def catalogue(database: Database) -> AsyncIterator[list[DemoUser]]:
    """One user with CATALOGUE_LABS labs among OTHERS users with OTHERS_LABS each."""
    yield await load_demo_data(
        database.admin_dsn,
        labs=CATALOGUE_LABS,
        others=OTHERS,
        others_labs=OTHERS_LABS,
        password_hash=_hash(),
        now=ANCHOR,
    )


async def test_a_catalogue_has_a_long_tail_of_words(
    admin: asyncpg.Connection, catalogue: list[DemoUser]
) -> None:
    stats = await admin.fetchrow(
        "select count(*) as lexemes, count(*) filter (where ndoc = 1) as once,"
        " count(*) filter (where ndoc >= $2::int / 10) as common"
        " from ts_stat(format("
        "'select search_vector from public.labs where user_id = %L', $1::text))",
        str(catalogue[0].id),
        CATALOGUE_LABS,
    )
    assert stats["lexemes"] > 5000
    assert stats["once"] > 1000  # words in a single lab of 20,000
    assert stats["common"] >= 10  # and words in one lab in ten or more


@pytest.mark.parametrize("share", [1 / 10, 1 / 175, 1 / 1000])
async def test_keywords_match_about_their_share_of_labs(
    admin: asyncpg.Connection, catalogue: list[DemoUser], share: float
) -> None:
    matches = await admin.fetchval(
        "select count(*) from public.labs"
        " where user_id = $1 and search_vector @@ to_tsquery('english', $2)",
        catalogue[0].id,
        term_for_share(share),
    )
    expected = share * CATALOGUE_LABS  # 2,000, 114 and 20: within four standard deviations
    assert abs(matches - expected) < 4 * math.sqrt(expected)


async def test_a_rare_keyword_matches_next_to_nothing(
    admin: asyncpg.Connection, catalogue: list[DemoUser]
) -> None:
    matches = await admin.fetchval(
        "select count(*) from public.labs"
        " where user_id = $1 and search_vector @@ to_tsquery('english', $2)",
        catalogue[0].id,
        term_for_share(1 / 150_000),
    )
    assert matches <= 2  # 0.13 expected


async def test_notes_go_from_none_to_hundreds_of_words(
    admin: asyncpg.Connection, catalogue: list[DemoUser]
) -> None:
    notes = await admin.fetchrow(
        "select count(*) filter (where notes is null) as null,"
        " count(*) filter (where notes = '') as empty,"
        " count(*) filter (where array_length(regexp_split_to_array(notes, '\\s+'), 1) > 200)"
        " as long, max(length(notes)) as longest"
        " from public.labs where user_id = $1",
        catalogue[0].id,
    )
    assert 0.34 < notes["null"] / CATALOGUE_LABS < 0.42
    assert 0.02 < notes["empty"] / CATALOGUE_LABS < 0.06
    assert notes["long"] > 50
    assert 2_000 < notes["longest"] <= 10_000


async def test_the_users_labs_are_mixed_in_created_at_order(
    admin: asyncpg.Connection, catalogue: list[DemoUser]
) -> None:
    rows = await admin.fetch(ROWS, [user.id for user in catalogue])
    assert [user.labs for user in catalogue] == [CATALOGUE_LABS] + [OTHERS_LABS] * OTHERS
    assert len(rows) == CATALOGUE_LABS + OTHERS * OTHERS_LABS
    owners = [row["user_id"] for row in rows]
    assert sum(a != b for a, b in pairwise(owners)) > OTHERS * OTHERS_LABS
    assert rows[0]["created_at"] >= ANCHOR - SPAN and rows[-1]["created_at"] < ANCHOR


async def test_the_same_arguments_on_fresh_databases_give_the_same_catalogue(
    database: Database,
) -> None:
    loaded = []
    for _ in range(2):
        fresh = await create_database(database, f"scriptlabs_demo_{uuid.uuid4().hex[:8]}")
        users = await load_demo_data(
            fresh.admin_dsn,
            labs=300,
            users=2,
            others=3,
            others_labs=20,
            password_hash=_hash(),
            now=ANCHOR,
        )
        conn = await asyncpg.connect(fresh.admin_dsn)
        try:
            loaded.append((users, await conn.fetch(ROWS, [user.id for user in users])))
        finally:
            await conn.close()
    assert loaded[0] == loaded[1]
    assert len(loaded[0][1]) == 360


async def test_demo_data_adds_numbered_users_with_their_share_of_labs(
    database: Database,
    admin: asyncpg.Connection,
    api: Api,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _cheap_cli(database, monkeypatch)
    assert await _run(["demo-data", "--labs", "5", "--users", "2"]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [int(labs) for _, _, labs in lines] == [3, 2]
    numbers = [int(email.split("@")[0].split("-")[1]) for email, _, _ in lines]
    assert numbers[1] == numbers[0] + 1
    for email, user_id, labs in lines:
        count = await admin.fetchval(
            "select count(*) from public.labs where user_id = $1", uuid.UUID(user_id)
        )
        assert count == int(labs)
    # the users can sign in with the default password and see their labs
    email, _, labs = lines[0]
    data = await api.ok(
        'mutation($e: String!) { signIn(email: $e, password: "demo-password") { accessToken } }',
        {"e": email},
    )
    listed = await api.ok("{ labs { totalCount } }", token=data["signIn"]["accessToken"])
    assert listed["labs"]["totalCount"] == int(labs)
    # numbering goes on from the highest demo user, the others after the users
    assert await _run(["demo-data", "--labs", "1", "--others", "2", "--others-labs", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in out] == [
        f"demo-{numbers[1] + n}@scriptlabs.test" for n in (1, 2, 3)
    ]
    assert [line.split("\t")[2] for line in out] == ["1", "3", "3"]


async def test_others_and_others_labs_go_together(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _cheap_cli(database, monkeypatch)
    assert await _run(["demo-data", "--labs", "1", "--others", "2"]) != 0
    assert "--others-labs" in capsys.readouterr().err


def _cheap_cli(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database.dsn)
    monkeypatch.setenv("DATABASE_ADMIN_URL", database.admin_dsn)
    monkeypatch.setenv("ARGON2_MEMORY_KIB", "8192")
    monkeypatch.setenv("ARGON2_TIME_COST", "1")


async def _run(argv: list[str]) -> int:
    # the command runs its own event loop
    return await asyncio.to_thread(main, argv)


async def test_a_bulk_load_builds_the_search_index_again_as_it_was(database: Database) -> None:
    fresh = await create_database(database, f"scriptlabs_demo_{uuid.uuid4().hex[:8]}")
    conn = await asyncpg.connect(fresh.admin_dsn)
    try:
        before = await conn.fetch(SEARCH_INDEXES)
        assert [i["name"] for i in before] == ["labs_search_idx"]
        users = await load_demo_data(
            fresh.admin_dsn, labs=500, password_hash=_hash(), now=ANCHOR, bulk=100
        )
        assert await conn.fetch(SEARCH_INDEXES) == before
        term = term_for_share(1 / 10)
        matching = await conn.fetchval(
            "select count(*) from public.labs"
            " where user_id = $1 and search_vector @@ to_tsquery('english', $2)",
            users[0].id,
            term,
        )
        await conn.execute("set enable_seqscan = off")
        indexed = await conn.fetchval(
            "select count(*) from public.labs where search_vector @@ to_tsquery('english', $1)",
            term,
        )
        assert matching == indexed > 0
    finally:
        await conn.close()
