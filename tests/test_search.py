"""searchLabs: ranking, syntax, pages, snippets, prefixes, facets, suggestions, isolation.

Each user here has a catalogue made for the case at hand; results are compared with what the
test knows of that catalogue (ids, counts made in Python). Documents are sent through the
planned path (`api`) and, where it matters, compared byte for byte with the Strawberry path.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import asyncpg
import httpx
import pytest

from scriptlabs.labs import search as search_module
from tests.conftest import Api, User, code, error_codes
from tests.test_planner import _both as both_paths

IMPORT = "mutation($labs: [CreateLabInput!]!) { importLabs(labs: $labs) { ids } }"
SEARCH = """
query($q: String!, $f: LabFilter, $first: Int, $after: String, $prefix: Boolean) {
  searchLabs(query: $q, filter: $f, first: $first, after: $after, prefix: $prefix) {
    totalCount
    edges { cursor rank node { id title } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


async def add(api: Api, user: User, labs: list[dict[str, Any]]) -> list[str]:
    data = await api.ok(IMPORT, {"labs": labs}, token=user.token)
    ids: list[str] = data["importLabs"]["ids"]
    return ids


async def search(api: Api, user: User, q: str, **arguments: Any) -> dict[str, Any]:
    data = await api.ok(SEARCH, {"q": q, **arguments}, token=user.token)
    result: dict[str, Any] = data["searchLabs"]
    return result


def titles(result: dict[str, Any]) -> list[str]:
    return [e["node"]["title"] for e in result["edges"]]


def lab(title: str, author: str = "Someone", **fields: Any) -> dict[str, Any]:
    return {"title": title, "author": author, **fields}


async def test_a_word_in_the_title_ranks_above_author_category_and_notes(api: Api) -> None:
    user = await api.sign_up()
    await add(
        api,
        user,
        [
            lab("Ordinary notes", notes="a story about the nebula"),
            lab("Ordinary category", category="Nebula studies"),
            lab("Ordinary author", author="Nebula Jones"),
            lab("The Nebula"),
            lab("Nothing to see", notes="no match here"),
        ],
    )
    result = await search(api, user, "nebula")
    assert titles(result) == [
        "The Nebula",
        "Ordinary author",
        "Ordinary category",
        "Ordinary notes",
    ]
    ranks = [e["rank"] for e in result["edges"]]
    assert ranks == sorted(ranks, reverse=True) and ranks[-1] > 0
    assert result["totalCount"] == 4


async def test_web_search_syntax_phrases_or_and_exclusion(api: Api) -> None:
    user = await api.sign_up()
    await add(
        api,
        user,
        [
            lab("Red planet", notes="the red dust of the planet"),
            lab("Planet red", notes="a planet that is red"),
            lab("Blue moon"),
            lab("Red moon"),
        ],
    )
    assert sorted(titles(await search(api, user, '"red planet"'))) == ["Red planet"]
    assert sorted(titles(await search(api, user, "blue or planet"))) == [
        "Blue moon",
        "Planet red",
        "Red planet",
    ]
    assert sorted(titles(await search(api, user, "red -planet"))) == ["Red moon"]
    assert sorted(titles(await search(api, user, "red moon"))) == ["Red moon"]  # words AND
    # stemming (English): "planets" finds "planet"
    assert len(titles(await search(api, user, "planets"))) == 2


async def test_stop_words_only_find_nothing_and_a_blank_query_lists_newest_first(
    api: Api,
) -> None:
    user = await api.sign_up()
    first = await add(api, user, [lab("Older one", rating=2)])
    second = await add(api, user, [lab("Newer one", rating=4)])
    for q in ("the", "and of the", '"the"', "-the"):
        result = await search(api, user, q)
        assert result["edges"] == [] and result["totalCount"] == 0, q
    result = await search(api, user, "   ")
    assert [e["node"]["id"] for e in result["edges"]] == second + first
    assert {e["rank"] for e in result["edges"]} == {0.0}
    filtered = await search(api, user, "", f={"rating": {"gte": 3}})
    assert [e["node"]["id"] for e in filtered["edges"]] == second
    assert filtered["totalCount"] == 1


async def test_the_filter_combines_with_the_text_match(api: Api) -> None:
    user = await api.sign_up()
    await add(
        api,
        user,
        [
            lab("Comet tale", rating=5, readingStatus="READ", category="Space"),
            lab("Comet notes", rating=2, readingStatus="READ", category="Space"),
            lab("Comet guide", rating=5, readingStatus="TO_READ"),
            lab("Asteroid", rating=5, readingStatus="READ", category="Space"),
        ],
    )
    result = await search(
        api, user, "comet", f={"rating": {"eq": 5}, "readingStatus": {"eq": "READ"}}
    )
    assert titles(result) == ["Comet tale"] and result["totalCount"] == 1
    result = await search(api, user, "comet", f={"category": {"isNull": True}})
    assert titles(result) == ["Comet guide"]


@pytest.mark.parametrize("slack", [3, search_module.SLACK])
async def test_cursors_page_through_ties_stably(
    api: Api, monkeypatch: pytest.MonkeyPatch, slack: int
) -> None:
    """60 labs of the same rank and 10 better ones: pages of 7 give every match once, in rank
    then newest order, even while labs are added between the pages (those that sort before
    the cursor are not seen, the others are). With a read-ahead of 3 rows, every page ends in
    a group of ties longer than what was read, which is then completed newest first."""
    monkeypatch.setattr(search_module, "SLACK", slack)
    user = await api.sign_up()
    tied = [lab(f"Lantern {i}") for i in range(60)]
    better = [lab(f"Lantern lantern {i}", notes="lantern") for i in range(10)]
    # separate imports: distinct creation times as well as ties on them
    for chunk in (tied[:30], better, tied[30:]):
        await add(api, user, chunk)
    whole = await search(api, user, "lantern", first=100)
    assert whole["totalCount"] == 70
    expected = [e["node"]["id"] for e in whole["edges"]]
    assert len(set(expected)) == 70
    assert all(t.startswith("Lantern lantern") for t in titles(whole)[:10])
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        result = await search(api, user, "lantern", first=7, after=after)
        seen += [e["node"]["id"] for e in result["edges"]]
        assert result["pageInfo"]["hasPreviousPage"] is (after is not None)
        pages += 1
        if pages == 3:
            # the best, and the newest of the ties: both before the cursor; a worse one after
            await add(api, user, [lab("Lantern lantern lantern new"), lab("Lantern newest")])
            late = await add(api, user, [lab("Late one", notes="lantern")])
        if not result["pageInfo"]["hasNextPage"]:
            break
        after = result["pageInfo"]["endCursor"]
    assert seen == expected + late


async def test_pages_by_cursor_are_the_same_bytes_on_both_paths(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = Api(client)
    user = await api.sign_up()
    await add(api, user, [lab(f"Harbor {i}", notes="harbor " * (i % 4)) for i in range(30)])
    after = None
    for _ in range(4):
        body = {"query": SEARCH, "variables": {"q": "harbor", "first": 8, "after": after}}
        planned, _ = await both_paths(client, unplanned_client, body, user.token, caplog)
        after = planned.json()["data"]["searchLabs"]["pageInfo"]["endCursor"]


async def test_snippets_mark_matches_escape_html_and_are_null_without_notes(api: Api) -> None:
    user = await api.sign_up()
    await add(
        api,
        user,
        [
            lab("Snip one", notes="Before the <b>glacier</b> & after, 1 < 2 > 0, a glacier."),
            lab("Snip two glacier", notes="   "),
            lab("Snip three glacier"),
        ],
    )
    data = await api.ok(
        '{ searchLabs(query: "glacier") { edges { snippet node { title } } } }', token=user.token
    )
    snippets = {e["node"]["title"]: e["snippet"] for e in data["searchLabs"]["edges"]}
    assert snippets["Snip two glacier"] is None
    assert snippets["Snip three glacier"] is None
    one = snippets["Snip one"]
    assert one.count("<mark>glacier</mark>") == 2
    assert "&amp;" in one and "1 &lt; 2 &gt; 0" in one
    assert "<b>" not in one and "&lt;b&gt;" not in one.replace("<mark>", "")


async def test_prefix_matches_the_last_word_as_typed(api: Api) -> None:
    user = await api.sign_up()
    await add(
        api,
        user,
        [lab("Dune"), lab("Dunes of Arrakis"), lab("Theory of dunes"), lab("Thermal spring")],
    )
    assert titles(await search(api, user, "dun")) == []
    assert sorted(titles(await search(api, user, "dun", prefix=True))) == [
        "Dune",
        "Dunes of Arrakis",
        "Theory of dunes",
    ]
    # a stop word being typed still prefixes: "the" begins "theory" and "thermal"
    assert sorted(titles(await search(api, user, "the", prefix=True))) == [
        "Theory of dunes",
        "Thermal spring",
    ]
    assert titles(await search(api, user, "dunes arr", prefix=True)) == ["Dunes of Arrakis"]
    # quotes and exclusions are kept as they are
    assert titles(await search(api, user, '"dun"', prefix=True)) == []
    assert sorted(titles(await search(api, user, "dune -arr", prefix=True))) == [
        "Dune",
        "Dunes of Arrakis",
        "Theory of dunes",
    ]


FACETS = """
query($q: String!, $f: LabFilter) {
  searchLabs(query: $q, filter: $f, first: 1) {
    totalCount
    facets {
      byCategory { category count }
      byStatus { status count }
      byRating { rating count }
    }
  }
}"""


async def test_facets_count_every_match_not_only_the_page(api: Api) -> None:
    user = await api.sign_up()
    labs = [
        lab(
            f"Orbit {i}" if i % 5 else f"Other {i}",
            category=[None, "Space", "Physics", "Space"][i % 4],
            rating=[None, 1, 3, 5, 3][i % 5],
            readingStatus=["TO_READ", "READING", "READ"][i % 3],
        )
        for i in range(40)
    ]
    await add(api, user, labs)
    matching = [x for x in labs if x["title"].startswith("Orbit")]
    data = await api.ok(FACETS, {"q": "orbit"}, token=user.token)
    result = data["searchLabs"]
    assert result["totalCount"] == len(matching) == 32

    def counted(key: str) -> Counter[Any]:
        return Counter(x.get(key) for x in matching if x.get(key) is not None)

    facets = result["facets"]
    assert {f["category"]: f["count"] for f in facets["byCategory"]} == counted("category")
    assert {f["status"]: f["count"] for f in facets["byStatus"]} == counted("readingStatus")
    assert {f["rating"]: f["count"] for f in facets["byRating"]} == counted("rating")
    for facet in facets.values():
        counts = [f["count"] for f in facet]
        assert counts == sorted(counts, reverse=True)
    filtered = await api.ok(FACETS, {"q": "orbit", "f": {"rating": {"eq": 3}}}, token=user.token)
    assert filtered["searchLabs"]["facets"]["byRating"] == [{"rating": 3, "count": 16}]


SUGGEST = "query($q: String!) { searchLabs(query: $q) { totalCount suggestion } }"


async def test_a_query_that_matches_nothing_gets_the_closest_spelling(api: Api) -> None:
    user = await api.sign_up()
    await add(
        api,
        user,
        [lab("Quasar Chronicles", author="Vera Lindqvist", category="Astronomy")],
    )

    async def suggestion(q: str) -> str | None:
        data = await api.ok(SUGGEST, {"q": q}, token=user.token)
        value: str | None = data["searchLabs"]["suggestion"]
        return value

    assert await suggestion("quaser") == "quasar"
    assert await suggestion("quaser cronicles") == "quasar chronicles"
    assert await suggestion("astronmy") == "astronomy"
    assert await suggestion("lindqvst") == "lindqvist"
    assert await suggestion("quasar") is None  # it matches
    assert await suggestion("zzyzx") is None  # nothing close
    assert await suggestion("") is None
    # the words follow the catalogue: renamed away, the old spelling is no longer offered
    other = await api.sign_up()
    await add(api, other, [lab("Pulsar notes")])
    data = await api.ok(SUGGEST, {"q": "pulsr"}, token=other.token)
    assert data["searchLabs"]["suggestion"] == "pulsar"
    ids = await add(api, other, [lab("Magnetar")])
    await api.ok(
        'mutation($id: UUID!) { updateLab(id: $id, input: {title: "Neutron star"}) { id } }',
        {"id": ids[0]},
        token=other.token,
    )
    data = await api.ok(SUGGEST, {"q": "magnetr"}, token=other.token)
    assert data["searchLabs"]["suggestion"] is None
    data = await api.ok(SUGGEST, {"q": "nutron"}, token=other.token)
    assert data["searchLabs"]["suggestion"] == "neutron"


async def test_nothing_of_another_user_shows_anywhere(api: Api, admin: asyncpg.Connection) -> None:
    owner = await api.sign_up()
    stranger = await api.sign_up()
    await add(api, owner, [lab("Zephyrine secrets", category="Private", rating=5)])
    await add(api, stranger, [lab("Ordinary book", category="Mine")])
    data = await api.ok(
        FACETS.replace("totalCount", "totalCount suggestion edges { node { id } }"),
        {"q": "zephyrine"},
        token=stranger.token,
    )
    result = data["searchLabs"]
    assert result["totalCount"] == 0 and result["edges"] == []
    assert result["facets"] == {"byCategory": [], "byStatus": [], "byRating": []}
    assert result["suggestion"] is None  # the owner's words are not the stranger's
    data = await api.ok(SUGGEST, {"q": "zephyrin"}, token=stranger.token)
    assert data["searchLabs"]["suggestion"] is None
    blank = await search(api, stranger, "")
    assert titles(blank) == ["Ordinary book"]
    # the database function, called as each user would call it through Supabase
    for user, expected in ((stranger, []), (owner, ["Zephyrine secrets"])):
        async with admin.transaction():
            claims = json.dumps({"sub": user.id, "role": "authenticated"})
            await admin.execute(
                "select set_config('role', 'authenticated', true),"
                " set_config('request.jwt.claims', $1, true)",
                claims,
            )
            rows = await admin.fetch("select title, rank from public.search_labs('zephyrine')")
            assert [r["title"] for r in rows] == expected
            everything = await admin.fetch("select title from public.search_labs('', 100)")
            assert len(everything) == 1
            words = await admin.fetch("select word from public.lab_words")
            assert ("zephyrine" in {w["word"] for w in words}) is (user is owner)
            await admin.execute("select set_config('role', 'none', true)")


async def test_the_database_function_ranks_and_prefixes_as_the_api_does(
    api: Api, admin: asyncpg.Connection
) -> None:
    user = await api.sign_up()
    await add(api, user, [lab("Ordinary notes", notes="vortex"), lab("Vortex"), lab("Vortices")])
    result = await search(api, user, "vortex")
    async with admin.transaction():
        claims = json.dumps({"sub": user.id, "role": "authenticated"})
        await admin.execute(
            "select set_config('role', 'authenticated', true),"
            " set_config('request.jwt.claims', $1, true)",
            claims,
        )
        rows = await admin.fetch("select title, rank from public.search_labs('vortex')")
        assert [r["title"] for r in rows] == titles(result)
        assert [r["rank"] for r in rows] == [e["rank"] for e in result["edges"]]
        rows = await admin.fetch("select title from public.search_labs('vort', 10, true)")
        assert {r["title"] for r in rows} == {"Ordinary notes", "Vortex", "Vortices"}
        await admin.execute("select set_config('role', 'none', true)")
    async with admin.transaction():
        await admin.execute("select set_config('role', 'anon', true)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await admin.fetch("select * from public.search_labs('vortex')")


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"q": "x", "first": 101}, "first"),
        ({"q": "x", "first": -1}, "first"),
        ({"q": "x", "after": "not a cursor"}, "after"),
        ({"q": "x", "after": "eyJzIjpbMSwyXX0"}, "after"),  # {"s":[1,2]}
        ({"q": "x" * 501}, "query"),
    ],
)
async def test_bad_arguments_are_bad_user_input(
    api: Api, arguments: dict[str, Any], field: str
) -> None:
    user = await api.sign_up()
    result = await api.gql(SEARCH, arguments, token=user.token)
    assert code(result) == "BAD_USER_INPUT", result
    assert result["errors"][0]["extensions"]["field"] == field


async def test_anonymous_callers_are_refused(api: Api) -> None:
    result = await api.gql('{ searchLabs(query: "x") { totalCount } }')
    assert error_codes(result) == ["UNAUTHENTICATED"]


async def test_hostile_queries_answer_normally(api: Api) -> None:
    """Query text is data: quotes, operators, tsquery syntax and SQL never reach the SQL."""
    user = await api.sign_up()
    await add(api, user, [lab("Safe title", notes="it's quoted")])
    for q in [
        "'; drop table labs; --",
        "a & b | !c <-> d:*",
        '"unclosed phrase',
        "((((",
        "-",
        "or or or",
        "it's",
        "\\' \\\\",
        "é😀漢字",
    ]:
        for prefix in (False, True):
            result = await api.gql(SEARCH, {"q": q, "prefix": prefix}, token=user.token)
            assert "errors" not in result, (q, result)
    assert titles(await search(api, user, "it's quoted")) == ["Safe title"]
    assert titles(await search(api, user, "'quot", prefix=True)) == ["Safe title"]


PARITY = [
    # everything, with aliases, __typename and fragments
    'query { s: searchLabs(query: "meteor", first: 3) { __typename totalCount'
    " e: edges { __typename c: cursor rank snippet node { ...L } }"
    " pageInfo { __typename hasNextPage hasPreviousPage startCursor endCursor }"
    " facets { __typename byCategory { __typename category count }"
    " byStatus { status count __typename } byRating { count rating } } suggestion } }"
    " fragment L on Lab { id title author category rating readingStatus notes createdAt }",
    # a blank query, a filter, prefix
    '{ searchLabs(query: "  ", filter: {rating: {gte: 2}}) { edges { rank node { title } } } }',
    '{ searchLabs(query: "mete", prefix: true) { totalCount edges { node { title } } } }',
    # nothing matches: suggestion; empty facets; first: 0
    '{ searchLabs(query: "meteorr") { totalCount suggestion facets { byRating { rating } } } }',
    '{ searchLabs(query: "meteor", first: 0) { edges { cursor } pageInfo { hasNextPage'
    " startCursor endCursor } totalCount } }",
    # two searches and a list in one statement; a mixed document (me runs through Strawberry)
    '{ a: searchLabs(query: "meteor") { totalCount } b: searchLabs(query: "comet or meteor")'
    " { edges { rank } } labs(first: 2) { nodes { title } } }",
    '{ me { email } searchLabs(query: "meteor shower") { edges { snippet node { title } } } }',
    # errors
    '{ searchLabs(query: "meteor", first: 500) { totalCount } labs { totalCount } }',
    '{ searchLabs(query: "meteor", after: "bad") { totalCount } }',
]


@pytest.mark.parametrize("query", PARITY)
async def test_searches_are_the_same_bytes_on_both_paths(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    query: str,
) -> None:
    api = Api(client)
    user = await api.sign_up()
    await add(
        api,
        user,
        [
            lab(
                f"Meteor {i}" if i % 3 else f"Comet {i}",
                category=["Sky", None, "Rocks"][i % 3],
                rating=[None, 1, 2, 3, 4, 5][i % 6],
                readingStatus=["TO_READ", "READING", "READ"][i % 3],
                notes=["", "A meteor shower & <b>stars</b>", None, "meteor " * 40][i % 4],
            )
            for i in range(25)
        ],
    )
    await both_paths(client, unplanned_client, {"query": query}, user.token, caplog)


async def test_snippets_and_facets_are_computed_only_when_selected(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the SQL of snippets and facets made unavailable, a search that does not select
    them still answers, on both paths; one that does fails."""
    api = Api(client)
    user = await api.sign_up()
    await add(api, user, [lab("Tundra notes", notes="tundra and taiga")])

    def unavailable(*args: object) -> str:
        raise RuntimeError("computed although not selected")

    monkeypatch.setattr(search_module.SearchQuery, "snippet_sql", unavailable)
    monkeypatch.setattr(search_module, "facet_sql", unavailable)
    plain = '{ searchLabs(query: "tundra") { totalCount edges { rank node { title } } } }'
    for path in (client, unplanned_client):
        data = await Api(path).ok(plain, token=user.token)
        assert data["searchLabs"]["totalCount"] == 1
        for selected in ("edges { snippet }", "facets { byStatus { count } }"):
            response = await Api(path).post(
                f'{{ searchLabs(query: "tundra") {{ {selected} }} }}', token=user.token
            )
            assert error_codes(response.json()) == ["INTERNAL_SERVER_ERROR"], selected
