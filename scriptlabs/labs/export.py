"""A user's whole catalogue as CSV or JSON, streamed from a server-side cursor.

The HTTP endpoints (scriptlabs.http.export) and `scriptlabs export` (scriptlabs.cli) both
read `export_chunks`, so they write the same bytes (contract, section 1).

- One operation: one connection, one READ ONLY REPEATABLE READ transaction under the
  caller's role and claims (RLS keeps only the caller's rows), one deadline
  (EXPORT_TIMEOUT_S). The rows come from a cursor, `BATCH_ROWS` at a time, so memory stays
  the same whatever the catalogue's size.
- PostgreSQL formats each row (one text per row: a CSV line, a JSON object); Python only joins
  a batch and encodes it. Measured at 1,000,000 labs (bench/RESULTS.md): decoding twelve
  typed columns and formatting them in Python cost more CPU than the rest of the export.
- Values are as the GraphQL answer gives them: enum names (TO_READ), times as the DateTime
  scalar writes them (`datetime.isoformat(timespec="microseconds")` of a UTC value:
  `2026-12-05T06:10:00.123456+00:00`; tests compare both), null as an empty CSV field and
  JSON null.
- CSV is RFC 4180 as Python's csv module writes and reads it: comma, CRLF after every row,
  a field quoted when it holds a comma, a double quote or a line break, quotes doubled
  inside. An empty string (only `notes` can be one) is written `""`, so a reader that cares
  can tell it from null (Python's csv.reader reads both as '').
- Formula injection (a value starting with = + - @ that a spreadsheet would run): values are
  written as they are, not prefixed with `'`. The contract asks for the values as GraphQL
  gives them and `scriptlabs import` must read the file back exactly; the cells hold only
  what the user typed into their own catalogue; the endpoint serves the file as an
  attachment (never rendered). Open it in a spreadsheet with the columns imported as text.
- Rows come oldest first (`created_at, id`: the index labs_user_created_at_idx, no sort),
  so an import of the file adds them in the order they were made.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Literal

from scriptlabs.db.operation import Operation

Format = Literal["csv", "json"]
FORMATS: tuple[Format, ...] = ("csv", "json")
MEDIA_TYPES: dict[Format, str] = {"csv": "text/csv; charset=utf-8", "json": "application/json"}

# contract: the header row, even when there is no lab; the Lab fields' GraphQL names in the
# order of labs.columns.LAB_FIELDS (tests/test_export.py checks both)
CSV_HEADER = (
    "id,title,author,category,publicationYear,isbn,rating,readingStatus,notes,coverUrl,"
    "createdAt,updatedAt"
)
NEWLINE = "\r\n"  # RFC 4180, and the csv module's default

BATCH_ROWS = 2000  # rows per FETCH: about 0.5 MB of text for ordinary labs
# Both formats' rows are one text column: the driver caches `fetch N from labs_export` as a
# prepared statement with that shape, so a cursor of this name must never return another.
CURSOR = "labs_export"

# as scriptlabs.graphql.scalars.serialize_datetime writes a timestamptz read by asyncpg (UTC)
_TIME = """to_char({0} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""


def _csv_text(column: str) -> str:
    """A text column as one CSV field: empty for null, quoted when it must be, '""' if empty."""
    return (
        f"case when {column} is null then ''"
        f" when {column} = '' or {column} ~ E'[\",\\r\\n]'"
        f" then '\"' || replace({column}, '\"', '\"\"') || '\"'"
        f" else {column} end"
    )


def _csv_plain(expression: str) -> str:
    """A value that never needs quoting (uuid, integer, enum name, time): empty for null."""
    return f"coalesce(({expression})::text, '')"


# one CSV line (without its line break) per lab; RLS adds the owner's filter
SELECT_CSV = (
    "select "
    + "\n    || ',' || ".join(
        (
            _csv_plain("id"),
            _csv_text("title"),
            _csv_text("author"),
            _csv_text("category"),
            _csv_plain("publication_year"),
            _csv_plain("isbn"),  # digits and X only (labs_isbn_check)
            _csv_plain("rating"),
            _csv_plain("upper(reading_status)"),
            _csv_text("notes"),
            _csv_text("cover_url"),
            _TIME.format("created_at"),
            _TIME.format("updated_at"),
        )
    )
    + "\nfrom public.labs\norder by created_at, id"
)

# one JSON object per lab, keyed by the GraphQL field names; row_to_json writes it compact
SELECT_JSON = f"""
select row_to_json(r)::text
from public.labs l
cross join lateral (
  select l.id, l.title, l.author, l.category, l.publication_year as "publicationYear", l.isbn,
         l.rating, upper(l.reading_status) as "readingStatus", l.notes,
         l.cover_url as "coverUrl", {_TIME.format("l.created_at")} as "createdAt",
         {_TIME.format("l.updated_at")} as "updatedAt"
) r
order by l.created_at, l.id
"""

SELECT = {"csv": SELECT_CSV, "json": SELECT_JSON}

COUNT_LABS = "select count(*) from public.labs"


async def count_labs(op: Operation) -> int:
    """How many labs the export will write (in its snapshot): for a progress bar."""
    count: int = await op.fetchval(COUNT_LABS)
    return count


async def open_cursor(op: Operation, fmt: Format) -> None:
    """Begin the export: declare its cursor (the transaction begins here, if not before)."""
    await op.execute(f"declare {CURSOR} no scroll cursor for {SELECT[fmt]}")


async def export_chunks(
    op: Operation, fmt: Format, *, batch: int = BATCH_ROWS
) -> AsyncGenerator[tuple[bytes, int], None]:
    """The export's bytes, a batch at a time, each with its number of rows; the cursor must
    be open (`open_cursor`). The first chunk holds at least the CSV header or the '['."""
    fetch = f"fetch {int(batch)} from {CURSOR}"
    first = True
    while True:
        rows = await op.fetch(fetch)
        texts = [row[0] for row in rows]
        if fmt == "csv":
            head = CSV_HEADER + NEWLINE if first else ""
            body = NEWLINE.join(texts) + NEWLINE if texts else ""
            chunk = head + body
        elif not texts:
            chunk = "[]\n" if first else "]\n"
        else:
            chunk = ("[" if first else ",\n") + ",\n".join(texts)
        first = False
        yield chunk.encode(), len(texts)
        if len(rows) < batch:
            if fmt == "json" and texts:
                yield b"]\n", 0
            return
