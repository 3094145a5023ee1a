"""Full-text search of labs: the loader of `searchLabs`, shared by its resolver and the planner.

A `SearchQuery` is the checked arguments; its methods write the SQL of each part of the
answer (the page's rows, the count, the facets, the suggestion), so the resolver runs them and
the planner wraps the same text in the statement that builds the JSON.

Order: by rank, best first, then `createdAt` newest first, then id (descending, as `labs`
breaks its ties). The SQL orders by `public.lab_search_distance` (db/014_search.sql), which
is 1 / rank and, with the rum extension, the search index's own ordering operator: the index
returns matches best first and a page reads a few dozen rows, not every match. Many labs share
a rank (a word once in the title ranks the same in each of them), so the best rows by
distance are read with some slack; when the last of them still ties with the page's boundary,
the rest of that tie group is read newest first, so the page is exact whatever the ties.

The caller's id is named in the SQL as well as by Row Level Security: with its value known
when the statement is planned (custom plans), PostgreSQL reads a small catalogue through the
user's own rows and a big one through the search index.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from scriptlabs.db.sql import Placeholders
from scriptlabs.errors import AppError, Code
from scriptlabs.labs.columns import ALL_COLUMNS, select_list
from scriptlabs.labs.filters import LabWhere, compile_where
from scriptlabs.labs.pagination import DEFAULT_PAGE, EPOCH, MAX_PAGE, MICROSECOND

MAX_QUERY_LENGTH = 500  # characters of a search query
# Rows read past the page in rank order, so that the group of equal ranks a page ends in is
# nearly always read whole (a word once in a title ranks the same in every such lab: the
# medium word's page ends in a group of 977). Reading them costs little next to the index's
# sort of every match: 5.6 ms for 1,011 rows of a 5,752-match word, 4.2 ms for 111.
SLACK = 1000
# Below this many labs a caller's matches are found by reading the caller's own labs: the
# planner would otherwise intersect the caller's rows with every match of a common word in the
# search index (26 ms for a word in 116,000 labs of all users, against 1 ms for a thousand labs
# read and tested). The number comes from lab_totals (db/013), kept by triggers.
SMALL_CATALOGUE = 10_000
CONFIG = "'english'"

_WORD = re.compile(r"[^\W_]+")
_LAST_WORD = re.compile(r"(?:^|[^\w\-])([^\W_]+)$")  # not an exclusion (-word)
# snippets: matches are marked with two control characters, which cannot come from the notes
# (they are taken out first); the text is then HTML-escaped and the marks become <mark> tags
_HEADLINE = "StartSel=\x01, StopSel=\x02, MaxFragments=1, MaxWords=30, MinWords=12"


@dataclass(frozen=True, slots=True)
class SearchCursor:
    """Where a page of a search ends: the row's distance, creation time and id."""

    distance: float
    created_at: dt.datetime
    id: uuid.UUID


def _bits(distance: float) -> int:
    """A real (float4) as its 32 bits, signed: exact, and what PostgreSQL writes alike."""
    return int(struct.unpack(">i", struct.pack(">f", distance))[0])


def encode_cursor(distance: float, created_at: dt.datetime, lab_id: uuid.UUID) -> str:
    micros = (created_at - EPOCH) // MICROSECOND
    payload = orjson.dumps({"s": [_bits(distance), micros, str(lab_id)]})
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def cursor_sql(alias: str) -> str:
    """SQL making, for a row of `alias` (with its distance `d_`), encode_cursor's text."""
    bits = f"('x' || encode(float4send({alias}.d_), 'hex'))::bit(32)::int4::text"
    micros = f"(extract(epoch from {alias}.created_at) * 1000000)::int8::text"
    payload = f"""'{{"s":[' || {bits} || ',' || {micros} || ',"' || {alias}.id || '"]}}'"""
    return f"rtrim(translate(encode(convert_to({payload}, 'UTF8'), 'base64'), E'+/\\n', '-_'), '=')"


def decode_cursor(cursor: str, name: str = "after") -> SearchCursor:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        bits, micros, lab_id = payload["s"]
        if type(bits) is not int or type(micros) is not int or not isinstance(lab_id, str):
            raise ValueError("wrong types")
        (distance,) = struct.unpack(">f", struct.pack(">i", bits))  # struct.error: range
        if distance != distance:  # NaN: no row has it
            raise ValueError("not a number")
        return SearchCursor(distance, EPOCH + micros * MICROSECOND, uuid.UUID(lab_id))
    except (
        ValueError,
        TypeError,
        KeyError,
        OverflowError,
        struct.error,
        binascii.Error,
        UnicodeError,
        orjson.JSONDecodeError,
    ):
        raise AppError(
            Code.BAD_USER_INPUT, f"{name} is not a valid cursor for this search", field=name
        ) from None


def search_query(
    *,
    query: str,
    where: LabWhere | None,
    first: int | None,
    after: str | None,
    prefix: bool,
) -> SearchQuery:
    """The arguments of searchLabs, checked (BAD_USER_INPUT naming the argument)."""
    if len(query) > MAX_QUERY_LENGTH:
        raise AppError(
            Code.BAD_USER_INPUT,
            f"query must be at most {MAX_QUERY_LENGTH} characters",
            field="query",
        )
    if "\x00" in query:
        raise AppError(Code.BAD_USER_INPUT, "query must not contain NUL", field="query")
    if first is not None and not 0 <= first <= MAX_PAGE:
        raise AppError(
            Code.BAD_USER_INPUT, f"first must be between 0 and {MAX_PAGE}", field="first"
        )
    return SearchQuery(
        text=query.strip(),
        prefix=prefix,
        where=where,
        limit=DEFAULT_PAGE if first is None else first,
        after=decode_cursor(after) if after is not None else None,
    )


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One page of a search, checked. `user` in the methods is the SQL of the caller's id."""

    text: str  # stripped; empty lists the labs newest first
    prefix: bool
    where: LabWhere | None
    limit: int
    after: SearchCursor | None

    @property
    def blank(self) -> bool:
        return not self.text

    @property
    def words(self) -> list[str]:
        """The query's words (lower case; not the operator `or`), for suggestions."""
        return [w.lower() for w in _WORD.findall(self.text) if w.lower() != "or"][:16]

    # -- the match

    def tsquery_sql(self, params: Placeholders) -> str:
        """The text query: web-search syntax; with `prefix`, its last word also as a prefix."""
        if self.blank:
            return "''::tsquery"
        text = params.add(self.text)
        web = f"websearch_to_tsquery({CONFIG}, {text})"
        last = _LAST_WORD.search(self.text) if self.prefix else None
        if last is None:
            return web
        # `dun` finds Dune: the last word's lexeme becomes a prefix (`'dun':*`); a word the
        # stemmer drops (a stop word such as `the` may begin `theory`) is added as typed, as
        # a prefix. The word reaches the query through quote_literal, never spliced in.
        word = params.add(last.group(1).lower())
        stemmed = f"numnode(plainto_tsquery({CONFIG}, {word})) > 0"
        typed = f"to_tsquery('simple', quote_literal({word}) || ':*')"
        replaced = f"regexp_replace({web}::text, '''$', ''':*')::tsquery"
        return (
            f"(case when {stemmed} and {web}::text like '%''' then {replaced} "
            f"else {web} && {typed} end)"
        )

    def conditions(
        self, params: Placeholders, user: str, tsquery: str, *, indexed: bool = True
    ) -> list[str]:
        """What every matching row satisfies: the caller's, the filter, the text. Not
        `indexed`, the text test is a function call the search index cannot answer, so the
        caller's own rows are read."""
        conditions = [f"user_id = {user}", compile_where(self.where, params)]
        if not self.blank:
            test = "search_vector @@ {}" if indexed else "ts_match_vq(search_vector, {})"
            conditions.append(test.format(tsquery))
        return [c for c in conditions if c != "true"]

    @staticmethod
    def small_sql(user: str) -> str:
        """Whether the caller's catalogue is small enough to read whole (SMALL_CATALOGUE)."""
        return (
            f"(select coalesce(max(t_.labs), 0) < {SMALL_CATALOGUE} "
            f"from public.lab_totals t_ where t_.user_id = {user})"
        )

    # -- the page

    def rows_sql(self, columns: Iterable[str], params: Placeholders, user: str) -> str:
        """The page's rows, `limit + 1` of them (to know whether more follow), best first;
        each with the selected `columns`, `created_at`, `id` and its distance `d_`."""
        wanted = set(columns) | {"id", "created_at"}
        cols = select_list([c for c in ALL_COLUMNS if c in wanted])
        tsquery = self.tsquery_sql(params)
        where = self.conditions(params, user, tsquery)
        page = self.limit + 1
        if self.blank:
            if self.after is not None:
                at = params.add(self.after.created_at)
                lab = params.add(self.after.id)
                where.append(f"(created_at, id) < ({at}, {lab})")
            return (
                f"select {cols}, 'Infinity'::real as d_ from public.labs\n"
                f"where {' and '.join(where)}\n"
                f"order by created_at desc, id desc\nlimit {params.add(page)}"
            )
        distance = f"public.lab_search_distance(search_vector, {tsquery})"
        small = self.small_sql(user)
        own_where = self.conditions(params, user, tsquery, indexed=False)
        if self.after is not None:
            d0 = params.add(self.after.distance)
            at = params.add(self.after.created_at)
            lab = params.add(self.after.id)
            after = (
                f"({distance} > {d0}::real or ({distance} = {d0}::real "
                f"and (created_at, id) < ({at}, {lab})))"
            )
            where.append(after)
            own_where.append(after)
        condition = " and ".join(where)
        own = " and ".join(own_where)
        read = params.add(page + SLACK)
        wanted_rows = params.add(page)
        best = f"select {cols}, {distance} as d_ from public.labs\n  where {condition}"
        # A small catalogue: its labs read and ranked whole. A big one: c_, the best rows by
        # distance from the index. top_: the distance of the last of them; when c_ is full and
        # fewer than a page rank better than top_ (all of those are in c_), the page ends
        # inside top_'s group of ties, which may go on past c_ (more_): then that group's
        # newest rows are read by time.
        return f"""with k_ as (select {small} as small_),
c_ as materialized (
  {best} and not (select small_ from k_)
  order by {distance}
  limit {read}
), s_ as (select max(d_) as top_, count(*) as n_ from c_),
w_ as (
  select (select n_ from s_) = {read}
     and (select count(*) from c_ where d_ < (select top_ from s_)) < {wanted_rows} as more_
)
select * from (
  select * from (
    select {cols}, {distance} as d_ from public.labs
    where (select small_ from k_) and {own}
    order by d_, created_at desc, id desc
    limit {wanted_rows}
  ) o_
  union all
  select * from c_ where not (select more_ from w_) or d_ < (select top_ from s_)
  union all
  select * from (
    {best} and (select more_ from w_) and {distance} = (select top_ from s_)
    order by created_at desc, id desc
    limit {wanted_rows}
  ) t_
) u_
order by d_, created_at desc, id desc
limit {wanted_rows}"""

    @staticmethod
    def rank_sql(alias: str) -> str:
        """A row's rank (real): 1 / its distance, 0 when the query ranks it nowhere."""
        return f"(case when {alias}.d_ = 'Infinity' then 0 else 1 / {alias}.d_ end)::real"

    def snippet_sql(self, alias: str, params: Placeholders) -> str:
        """The best fragment of a row's notes, matches in <mark>, the rest HTML-escaped;
        null when the notes are empty."""
        tsquery = self.tsquery_sql(params)
        notes = f"{alias}.notes"
        headline = (
            f"ts_headline({CONFIG}, translate({notes}, E'\\x01\\x02', ''), {tsquery}, "
            f"E'{_HEADLINE.replace(chr(1), chr(92) + 'x01').replace(chr(2), chr(92) + 'x02')}')"
        )
        escaped = headline
        for raw, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
            escaped = f"replace({escaped}, '{raw}', '{entity}')"
        marked = f"replace(replace({escaped}, E'\\x01', '<mark>'), E'\\x02', '</mark>')"
        return f"(case when nullif(btrim({notes}), '') is null then null else {marked} end)"

    # -- the rest of the answer

    def matches_sql(self, columns: Iterable[str], params: Placeholders, user: str) -> str:
        """Every match (no page), with `columns`: through the search index, or for a small
        catalogue from the caller's own labs."""
        tsquery = self.tsquery_sql(params)
        cols = select_list(list(columns)) if columns else "1"
        where = " and ".join(self.conditions(params, user, tsquery))
        if self.blank:
            return f"select {cols} from public.labs where {where}"
        own = " and ".join(self.conditions(params, user, tsquery, indexed=False))
        small = self.small_sql(user)
        return (
            f"select {cols} from public.labs where not {small} and {where}\n"
            f"union all\nselect {cols} from public.labs where {small} and {own}"
        )

    def count_sql(self, params: Placeholders, user: str) -> str:
        return f"select count(*) from ({self.matches_sql([], params, user)}) m_"

    def suggestion_sql(self, params: Placeholders, user: str) -> str:
        """The query with each word replaced by the closest word (trigram similarity) of the
        caller's titles, authors and categories, when nothing matches and a word changed;
        otherwise null."""
        words = self.words
        if not words:
            return "null::text"
        matches = self.matches_sql([], params, user)
        given = params.add(words)
        return f"""(select case when bool_or(s_.changed)
    then string_agg(s_.word, ' ' order by s_.i) end
  from (
    select q_.i, coalesce(b_.word, q_.w) as word, coalesce(b_.word <> q_.w, false) as changed
    from unnest({given}::text[]) with ordinality as q_(w, i)
    left join lateral (
      select w_.word from public.lab_words w_
      where w_.user_id = {user} and w_.labs > 0
        and (w_.word = q_.w or similarity(w_.word, q_.w) >= 0.3)
      order by w_.word = q_.w desc, similarity(w_.word, q_.w) desc, w_.labs desc, w_.word
      limit 1
    ) b_ on true
  ) s_
  where not exists ({matches}))"""


FACETS: dict[str, tuple[str, str]] = {
    # facet: (column, the order of its counts after "most labs first")
    "by_category": ("category", "category"),
    "by_status": (
        "reading_status",
        "array_position(array['to_read', 'reading', 'read'], reading_status::text)",
    ),
    "by_rating": ("rating", "rating desc"),
}


def facet_sql(facet: str, matches: str) -> str:
    """One facet's counts over the matches `matches`: rows (v_, n_, r_ their position), most
    labs first (labs with no value left out)."""
    column, order = FACETS[facet]
    ranked = f"count(*) desc, {order}"
    return (
        f"select {column} as v_, count(*)::int as n_, row_number() over (order by {ranked}) as r_ "
        f"from {matches} where {column} is not null group by {column} order by {ranked}"
    )


FACET_COLUMNS = [column for column, _ in FACETS.values()]
