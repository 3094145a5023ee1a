"""Registered documents for PERSISTED_QUERIES=only: `scriptlabs persisted add|list|remove`.

A document is registered under the SHA-256 of the exact text a client sends, since that is
the hash Apollo's protocol carries. `add` registers a file's whole text in two forms:

- as written, for clients that send the file's text unchanged (curl, generated code);
- as Apollo Client sends it: the client's cache adds `__typename` to every selection set but
  the operation's own (skipping those that already select it or select an introspection
  field), and the link hashes graphql-js's `print` of the result. graphql-core's printer
  prints the same text for the same tree but for list and object values, which graphql-js 16
  prints on one line without inner spaces (`{field: TITLE}`): those two are printed its way
  here (tests/test_persisted.py holds graphql-js's output; tests/test_apollo.py checks a
  registered document against a real Apollo Client).

When the two forms are the same text, one row is written. Files must parse and validate
against the schema, so nothing that could never run is registered.

A `.json` file is read as an Apollo persisted query manifest (`{"format":
"apollo-persisted-query-manifest", "version": 1, "operations": [{"id", "name", "type",
"body"}]}`, as @apollo/generate-persisted-query-manifest, Apollo Kotlin and Apollo iOS write
it): each body is registered exactly as written, the text those clients send, and its id
must be the body's SHA-256, the hash they send with it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from sys import maxsize
from typing import Any

import asyncpg
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    NameNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Visitor,
    parse,
    validate,
    visit,
)
from graphql.language import printer
from graphql.language.reducer import reduce


def sha256_hex(text: str) -> str:
    """The hash Apollo clients send: SHA-256 of the document's exact text (UTF-8), hex."""
    return hashlib.sha256(text.encode()).hexdigest()


INSERT = """
insert into scriptlabs_private.persisted_queries (hash, document, source)
values ($1, $2, $3)
on conflict (hash) do nothing
"""

LIST = """
select hash, source, created_at, length(document) as size
from scriptlabs_private.persisted_queries
order by created_at, hash
"""

DELETE = "delete from scriptlabs_private.persisted_queries where hash = any($1::text[])"


class DocumentError(ValueError):
    """A file that cannot be registered: it does not parse or validate."""


@dataclass(frozen=True, slots=True)
class Form:
    """One text of a document, as some client sends it, and its hash."""

    hash: str
    text: str
    label: str  # "as written" or "as Apollo Client sends it"


_TYPENAME = FieldNode(name=NameNode(value="__typename"), arguments=(), directives=())


class _AddTypename(Visitor):
    """Apollo Client's addTypenameToDocument, on graphql-core's tree."""

    def enter_selection_set(
        self, node: SelectionSetNode, key: object, parent: object, *_: object
    ) -> SelectionSetNode | None:
        if isinstance(parent, OperationDefinitionNode):
            return None
        if any(isinstance(s, FieldNode) and s.name.value.startswith("__") for s in node.selections):
            return None
        if isinstance(parent, FieldNode) and any(
            d.name.value == "export" for d in parent.directives or ()
        ):
            return None
        return SelectionSetNode(selections=(*node.selections, _TYPENAME))


def _list_value(node: Any) -> Any:
    return printer.join(("[", printer.join(node.values, ", "), "]"))


def _object_value(node: Any) -> Any:
    return printer.join(("{", printer.join(node.fields, ", "), "}"))


# graphql-js 16's printer: graphql-core's, with lists and objects never wrapped nor padded
_JS_PRINTER = {
    **printer.print_doc_ast_reducer,
    "list_value": _list_value,
    "object_value": _object_value,
}


def print_as_graphql_js(document: DocumentNode) -> str:
    """`print(document)` of graphql-js 16, the version Apollo Client runs with."""
    return str(printer.render(reduce(document, _JS_PRINTER), maxsize))


def apollo_client_text(document: DocumentNode) -> str:
    """The text Apollo Client (its InMemoryCache and persisted-queries link) sends."""
    return print_as_graphql_js(visit(document, _AddTypename()))


def _checked_document(text: str, schema: GraphQLSchema) -> DocumentNode:
    try:
        document = parse(text)
    except GraphQLError as exc:
        raise DocumentError(f"does not parse: {exc.message}") from None
    errors = validate(schema, document)
    if errors:
        raise DocumentError(f"does not validate: {errors[0].message}")
    return document


MANIFEST_FORMAT = "apollo-persisted-query-manifest"


def manifest_forms(text: str, schema: GraphQLSchema) -> list[Form]:
    """The operations of an Apollo persisted query manifest, each body as written."""
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"is not JSON: {exc}") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != MANIFEST_FORMAT
        or manifest.get("version") != 1
        or not isinstance(manifest.get("operations"), list)
    ):
        raise DocumentError(f'is not a manifest of format "{MANIFEST_FORMAT}", version 1')
    forms = []
    for i, operation in enumerate(manifest["operations"]):
        if not isinstance(operation, dict) or not isinstance(operation.get("body"), str):
            raise DocumentError(f"operations[{i}] has no body")
        body, name = operation["body"], operation.get("name") or f"operations[{i}]"
        try:
            _checked_document(body, schema)
        except DocumentError as exc:
            raise DocumentError(f"{name} {exc}") from None
        digest = sha256_hex(body)
        if operation.get("id") != digest:
            raise DocumentError(
                f"{name}: its id is not the SHA-256 of its body ({digest}); clients send that "
                "id as the hash, which must name the document's exact text here"
            )
        forms.append(Form(digest, body, f"manifest operation {name}"))
    return forms


def document_forms(text: str, schema: GraphQLSchema) -> list[Form]:
    """The forms of a file's text to register, checked against `schema`."""
    document = _checked_document(text, schema)
    forms = [Form(sha256_hex(text), text, "as written")]
    apollo = apollo_client_text(document)
    if apollo != text:
        forms.append(Form(sha256_hex(apollo), apollo, "as Apollo Client sends it"))
    return forms


async def register(conn: asyncpg.Connection, forms: list[Form], source: str) -> None:
    async with conn.transaction():
        for form in forms:
            await conn.execute(INSERT, form.hash, form.text, f"{source} ({form.label})")


async def registered(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(LIST)


async def unregister(conn: asyncpg.Connection, hashes: list[str]) -> int:
    status = await conn.execute(DELETE, hashes)
    return int(status.split()[-1])
