"""Inserting many rows at once: COPY on PostgreSQL, bulk_create elsewhere.

bulk_create on PostgreSQL sends INSERT ... UNNEST(arrays) and spends most of its time adapting
those arrays in Python (JSON columns worst: each value is quoted again as an array element);
COPY streams the rows (3x the rows/s of seed_demo, measured on 100k; 5x for retention's events).
Used by seed_demo, the retention service's event inserts and the rollups' rebuild.
"""

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models.expressions import DatabaseDefault
from django.db.models.fields import NOT_PROVIDED, AutoFieldMixin


def insert_with_ids(model, rows: list) -> None:
    """Insert unsaved rows and set their ids (taken from the table's sequence on PostgreSQL).

    Ids come from the sequence as an INSERT would take them, so event ids stay monotonic.
    """
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(rows, batch_size=1000)  # returns the ids (SQLite)
        return
    take_ids(model, rows)
    copy_rows(model, rows, with_pk=True)


def take_ids(model, rows: list) -> None:
    """Ids from the table's sequence (PostgreSQL), so rows can point at each other before COPY."""
    if not rows:
        return
    table, column = model._meta.db_table, model._meta.pk.column
    with connection.cursor() as cursor:
        sql = "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s::int)"
        cursor.execute(sql, [table, column, len(rows)])
        for row, (pk,) in zip(rows, cursor.fetchall(), strict=True):
            row.pk = pk


def copy_rows(model, rows: list, *, with_pk: bool = False) -> None:
    """Insert unsaved rows (ids from their sequences unless `with_pk`): COPY on PostgreSQL."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(rows, batch_size=1000)
        return
    fields = [f for f in model._meta.concrete_fields if with_pk or not isinstance(f, AutoFieldMixin)]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    conn = connections[DEFAULT_DB_ALIAS]  # the real wrapper: the proxy costs a lookup per value
    preps = [(f.attname, f.get_db_prep_save) for f in fields]
    # A field left to its database default (db_default) holds a DatabaseDefault expression on an
    # unsaved row; COPY takes values, so such a field gets its default's value.
    defaults = {f.attname: f.db_default for f in fields if f.db_default is not NOT_PROVIDED}
    sql = f"COPY {model._meta.db_table} ({columns}) FROM STDIN"  # noqa: S608 (names from the model)
    with conn.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row([prep(_value(row, attname, defaults), conn) for attname, prep in preps])


def _value(row, attname: str, defaults: dict):
    value = getattr(row, attname)
    if isinstance(value, DatabaseDefault):
        return defaults[attname]
    return value
