"""Model instances from rows read in plain SQL, converted as the ORM converts them.

The hottest reads are plain SQL built once per process: the kernel's locked read of the task on
every write, and the task every pushed fragment is rendered from. Compiling the ORM's
equivalent (select_related over several foreign keys, an annotation, first()'s ORDER BY) cost
more CPU than running it. Their rows become model instances here, each value through the same
converters the ORM applies (JSON, and dates and booleans on SQLite), so what a template or a
service sees cannot differ from an ORM read.
"""

import functools
from typing import Any

from django.db import connection
from django.db.models import Model


def columns(model: type[Model], alias: str, names: tuple[str, ...] = ()) -> list[str]:
    """`alias.column` for every concrete field of `model` (or only the attnames in `names`), in
    the model's field order: the order `from_row` and `Model.from_db` take values in."""
    return [
        f"{alias}.{connection.ops.quote_name(field.column)}"
        for field in model._meta.concrete_fields
        if not names or field.attname in names
    ]


@functools.cache
def _converters(model: type[Model], vendor: str) -> list[tuple[int, list, Any]]:
    """(index, converters, column) for the model's fields whose values need converting."""
    result = []
    for index, field in enumerate(model._meta.concrete_fields):
        column = field.get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        if converters:
            result.append((index, converters, column))
    return result


def from_row(model: type[Model], values) -> Model:
    """An instance of `model` from the values of all its concrete fields, in field order."""
    values = list(values)
    for index, converters, column in _converters(model, connection.vendor):
        for converter in converters:
            values[index] = converter(values[index], column, connection)
    return model.from_db(connection.alias, None, values)


def partial_from_row(model: type[Model], names: tuple[str, ...], values) -> Model:
    """An instance with only the fields `names` loaded (the rest deferred), from their values in
    field order (as `columns(model, alias, names)` selects them); no converters: for plain
    text and ids only."""
    loaded = [field.attname for field in model._meta.concrete_fields if field.attname in names]
    return model.from_db(connection.alias, loaded, values)
