"""Lab's fields by their GraphQL names: where the field table (labs/columns.py) meets camelCase.

The domain names a field by its attribute (`publication_year`); clients know it as Strawberry
shows it (`publicationYear`), in selections and in `extensions.field`.
"""

from __future__ import annotations

from collections.abc import Iterable

from strawberry.utils.str_converters import to_camel_case

from scriptlabs.labs import store
from scriptlabs.labs.columns import LAB_FIELDS
from scriptlabs.labs.pagination import SortKey


def graphql_name(attribute: str) -> str:
    """The GraphQL name of a field (`publication_year` → `publicationYear`), as the schema's
    `auto_camel_case` makes it."""
    return to_camel_case(attribute)


# GraphQL field name of Lab → attribute, and → column; in table order, `id` first
FIELD_ATTRIBUTES: dict[str, str] = {graphql_name(f.attribute): f.attribute for f in LAB_FIELDS}
FIELD_COLUMNS: dict[str, str] = {graphql_name(f.attribute): f.column for f in LAB_FIELDS}


def columns_for(fields: Iterable[str], keys: tuple[SortKey, ...] = ()) -> list[str]:
    """Columns for the selected Lab fields (GraphQL names; others such as `__typename` are
    ignored), plus what cursors need; in table order."""
    attributes = (FIELD_ATTRIBUTES[f] for f in fields if f in FIELD_ATTRIBUTES)
    return store.columns_for(attributes, keys)
