"""Import of a catalogue from CSV: the export's own file, or a Goodreads library export.

`scriptlabs import` (scriptlabs.ops.imports) and POST /import/labs.csv (scriptlabs.http.imports)
both drive a `LabImport`: they feed it text as it arrives and it inserts the good rows in
batches, inside the one operation (transaction, role, claims) they give it.

- Columns are named by the header (line 1): the export's (`title`, `author`, ...,
  `createdAt`, `updatedAt`; `id` is ignored: the labs get new ids), or a Goodreads export's
  (`Title`, `Author`, `ISBN13`/`ISBN`, `My Rating`, `Exclusive Shelf`, `Year Published` or
  else `Original Publication Year`, `My Review`, `Date Added`). Other columns are ignored.
- The rules are createLab's (scriptlabs.labs.rules): the same trimming, ISBN check, limits.
- createdAt and updatedAt of the export are kept, so a catalogue moved between accounts
  keeps its dates and order; Goodreads' `Date Added` becomes createdAt. Otherwise now().
- An empty field is null; `""` in the export's `notes` column is an empty string (the
  export writes an empty string so and null as nothing), elsewhere null too.
- Goodreads: `="0441172717"` is the ISBN 0441172717, `=""` none; ISBN13 is preferred when
  both are there; `My Rating` 0 means unrated; shelves read, currently-reading and to-read
  map to READ, READING and TO_READ, and a custom exclusive shelf is TO_READ (a shelf is a
  name the user made up: it says the book is on a list, not that it has been read); reviews
  are kept as they are (`<br/>` and all) in notes.
- Errors name the line (physical, header = 1) and the field (the Lab field's GraphQL name;
  null for a record that is not valid CSV). Every bad row is validated and counted; the
  first `MAX_ERRORS` are kept, so memory stays bounded for any file.
- All or nothing: once a row is bad, nothing more is inserted (validation goes on to the
  end) and the caller rolls back; with `skip_bad`, the good rows go in.
"""

from __future__ import annotations

import asyncio
import codecs
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from scriptlabs.db.operation import Operation
from scriptlabs.errors import Code, FieldError, from_db_error
from scriptlabs.labs import rules
from scriptlabs.labs.columns import BY_ATTRIBUTE, DB_FIELDS, WRITABLE, ReadingStatus
from scriptlabs.labs.csv_records import CsvError, CsvRecords, Record
from scriptlabs.labs.import_formats import (
    GRAPHQL_NAMES,
    HeaderError,
    Reader,
    RowShapeError,
    header_reader,
)

BATCH_ROWS = 2000
MAX_ERRORS = 1000

# the columns an import writes: createLab's, and the two times
_WRITTEN = (*WRITABLE, BY_ATTRIBUTE["created_at"], BY_ATTRIBUTE["updated_at"])
_COLUMNS = [f.column for f in _WRITTEN]
_TYPES = {f.column: "text" if f.sql_type == "varchar" else f.sql_type for f in _WRITTEN}
# rows without times are made a microsecond apart, in the file's order, so that the
# catalogue lists them as the file has them (one statement's now() is the same for all)
_NOW = f"now() + make_interval(secs => (${len(_COLUMNS) + 1}::bigint + t.n) / 1e6)"
_VALUES = [
    f"coalesce(t.created_at, {_NOW})"
    if f.column == "created_at"
    else f"coalesce(t.updated_at, greatest(t.created_at, {_NOW}))"
    if f.column == "updated_at"
    else f"coalesce(t.{f.column}, {f.default})"
    if f.default
    else f"t.{f.column}"
    for f in _WRITTEN
]
# one statement per batch; RLS and the column default put the caller's user_id on each row
INSERT_LABS = f"""
insert into public.labs ({", ".join(_COLUMNS)})
select {", ".join(_VALUES)}
from unnest({", ".join(f"${i}::{_TYPES[c]}[]" for i, c in enumerate(_COLUMNS, 1))})
     with ordinality as t({", ".join(_COLUMNS)}, n)
"""


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    field: str | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", {self.field}" if self.field else "")
        return f"{where}: {self.message}"


@dataclass(slots=True)
class Report:
    """What an import did: rows inserted, and the bad rows (the first MAX_ERRORS of them)."""

    inserted: int = 0
    rows: int = 0  # data rows read
    bad_rows: int = 0
    error_count: int = 0
    errors: list[RowError] = field(default_factory=list)
    fatal: bool = False  # the file could not be read to its end

    def add(self, error: RowError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(error)

    def as_json(self, *, imported: bool) -> dict[str, Any]:
        return {
            "inserted": self.inserted if imported else 0,
            "errors": [e.as_json() for e in self.errors],
            "errorCount": self.error_count,
            "rows": self.rows,
        }


def _stored(values: dict[str, Any]) -> dict[str, Any]:
    if isinstance(status := values.get("reading_status"), ReadingStatus):
        values["reading_status"] = status.value
    return values


_TIMES = ("created_at", "updated_at")


def check_row(read: Reader, fields: list[str]) -> tuple[dict[str, Any] | None, list[RowError]]:
    """A row's lab (attribute → stored value), or its errors (line 0: the caller's to set)."""
    problems: list[FieldError] = []
    try:
        values = read(fields, problems)
    except RowShapeError as exc:
        return None, [RowError(0, None, str(exc))]
    times = {name: values.pop(name) for name in _TIMES if name in values}
    try:
        cleaned = rules.clean(values, creating=True)
    except FieldError:
        for name, value in values.items():  # each field alone, to name every bad one
            try:
                rules.clean({name: value}, creating=True)
            except FieldError as exc:
                problems.append(exc)
    if problems:
        return None, [_row_error(exc) for exc in problems]
    cleaned.update(times)
    return _stored(cleaned), []


def _row_error(exc: FieldError) -> RowError:
    name = GRAPHQL_NAMES.get(exc.attribute, exc.attribute)
    return RowError(0, name, exc.template.format(field=name))


class LabImport:
    """One import: text in (`feed`, `close`), good rows inserted through `op` in batches."""

    def __init__(self, op: Operation, *, skip_bad: bool, batch_rows: int = BATCH_ROWS) -> None:
        self.op = op
        self.skip_bad = skip_bad
        self.batch_rows = batch_rows
        self.report = Report()
        self.format: str | None = None
        self._records = CsvRecords()
        self._read: Reader | None = None
        self._batch: list[dict[str, Any]] = []
        self._batch_line = 0
        self._queued = 0  # rows sent to the database
        self._in_flight: asyncio.Future[None] | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()

    @property
    def lines(self) -> int:
        return self._records.lines

    @property
    def writing(self) -> bool:
        """Whether good rows still go in: always with skip_bad, else until a bad row."""
        return not self.report.fatal and (self.skip_bad or not self.report.error_count)

    @property
    def imported(self) -> bool:
        """Whether the import is to be committed."""
        return self.writing

    async def feed_bytes(self, chunk: bytes, *, final: bool = False) -> bool:
        """Feed a piece of the file's bytes, UTF-8 (a byte-order mark allowed); False once
        the import cannot go on (a byte sequence that is not UTF-8 stops it, naming its
        line)."""
        try:
            text = self._decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            good = chunk[: exc.start].decode("utf-8", "replace")
            line = self.lines + 1 + good.count("\n")
            self.fail(line, "the file is not UTF-8 text (save it as CSV UTF-8)")
            return False
        await self.feed(text)
        return not self.report.fatal

    async def feed(self, text: str) -> None:
        if self.report.fatal:
            return
        try:
            records = self._records.feed(text)
        except CsvError as exc:
            self.fail(exc.line, exc.message)
            return
        await self._take(records)

    async def close(self) -> Report:
        """The text has ended: the last rows in, and the report."""
        if not self.report.fatal:
            try:
                records = self._records.close()
            except CsvError as exc:
                self.fail(exc.line, exc.message)
            else:
                await self._take(records)
        if self._read is None and not self.report.fatal:
            self.fail(1, "the file is empty: a header row is needed")
        await self._flush()
        await self._settle()
        return self.report

    def fail(self, line: int, message: str, field: str | None = None) -> None:
        """The file cannot be read on: nothing is imported."""
        self.report.add(RowError(line, field, message))
        self.report.fatal = True

    async def _take(self, records: list[Record]) -> None:
        for record in records:
            if self.report.fatal:
                return
            if record.fields is None:
                self.report.rows += self._read is not None
                self.report.bad_rows += 1
                self.report.add(RowError(record.line, None, f"not valid CSV: {record.error}"))
                if self._read is None:
                    self.report.fatal = True
                continue
            if self._read is None:
                try:
                    self.format, self._read = header_reader(record.fields)
                except HeaderError as exc:
                    self.fail(record.line, exc.message, exc.field)
                continue
            self.report.rows += 1
            lab, errors = check_row(self._read, record.fields)
            if errors:
                self.report.bad_rows += 1
                for error in errors:
                    self.report.add(RowError(record.line, error.field, error.message))
                continue
            if not self.writing:
                continue
            assert lab is not None
            if not self._batch:
                self._batch_line = record.line
            self._batch.append(lab)
            if len(self._batch) >= self.batch_rows:
                await self._flush()

    async def _flush(self) -> None:
        """Send the batch; PostgreSQL inserts it while the next one is read and checked
        (one batch in flight at a time, on the operation's one connection)."""
        batch, self._batch = self._batch, []
        await self._settle()
        if not batch or not self.writing:
            return
        arrays = [[lab.get(attribute_of(c)) for lab in batch] for c in _COLUMNS]
        offset, self._queued = self._queued, self._queued + len(batch)
        self._in_flight = asyncio.ensure_future(
            self._insert(arrays, offset, len(batch), self._batch_line)
        )
        await asyncio.sleep(0)  # let it send the statement before the parsing goes on

    async def _settle(self) -> None:
        """Wait for the batch in flight, if any (its errors are raised here)."""
        task, self._in_flight = self._in_flight, None
        if task is not None:
            await task

    async def cancel(self) -> None:
        """Stop the batch in flight (the import is abandoned; the caller rolls back)."""
        task, self._in_flight = self._in_flight, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _insert(self, arrays: list[list[Any]], offset: int, rows: int, line: int) -> None:
        try:
            await self.op.execute(INSERT_LABS, *arrays, offset)
        except asyncpg.PostgresError as exc:
            # the rules missed what the database refused: name the batch's first line
            error = from_db_error(exc, DB_FIELDS)
            if error.code is not Code.BAD_USER_INPUT:
                raise
            name = GRAPHQL_NAMES.get(error.attribute) if isinstance(error, FieldError) else None
            self.fail(line, f"a row from here on was refused: {error.message}", name)
            return
        self.report.inserted += rows


_ATTRIBUTE_OF = {f.column: f.attribute for f in _WRITTEN}


def attribute_of(column: str) -> str:
    return _ATTRIBUTE_OF[column]
