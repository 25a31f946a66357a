"""The orchestrator's frequent writes as SQL built once per shape.

A quick step costs a few UPDATEs and INSERTs, and building each through
the ORM (filters, expressions, the compiler) takes ten times longer than
the database takes to run it. On SQLite that time is spent holding the
write lock, which every worker process waits for. These helpers cover the
few shapes the orchestrator needs: equality and ``__lt`` filters,
assignments and ``Add`` increments, a single-value SELECT and multi-row
INSERTs. The SQL of each shape is built once and cached. The values go
through each field's own conversion, so the rows read back exactly as the
ORM would have written them, on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import AutoField, BigAutoField, Field, Model, SmallAutoField

_AUTO_FIELDS = (AutoField, BigAutoField, SmallAutoField)
_sql_cache: dict[tuple[Any, ...], str] = {}


@dataclass(frozen=True)
class Add:
    """Raise a column by ``amount`` (negative to lower it) in ``update``."""

    amount: int


def update(model: type[Model], filters: dict[str, Any], changes: dict[str, Any]) -> int:
    """Run one UPDATE of ``model`` and return how many rows it changed.

    ``filters`` maps a field name to the value it must equal (None for
    NULL), or ``name__lt`` to a bound. ``changes`` maps a field name to its
    new value, or to ``Add`` for an increment.
    """
    where = [_filter_shape(name, value) for name, value in filters.items()]
    sets = [(name, isinstance(value, Add)) for name, value in changes.items()]
    key = ("update", model, connection.vendor, tuple(where), tuple(sets))
    sql = _sql_cache.get(key)
    if sql is None:
        sql = _cache(key, _update_sql(model, where, sets))

    params: list[Any] = []
    for name, value in changes.items():
        params.append(
            value.amount if isinstance(value, Add) else _prep(model, name, value)
        )
    for (name, lookup), value in zip(where, filters.values(), strict=True):
        if lookup != "isnull":
            params.append(_prep(model, name, value))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def select_value(model: type[Model], pk: Any, name: str) -> Any:
    """Return one field of the row with primary key ``pk``.

    Raises the model's ``DoesNotExist`` when there is no such row.
    """
    field = _field(model, name)
    key = ("select", model, connection.vendor, name)
    sql = _sql_cache.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        table = quote(model._meta.db_table)
        pk_column = quote(_field(model, "pk").column)
        sql = _cache(
            key, f"SELECT {quote(field.column)} FROM {table} WHERE {pk_column} = %s"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [_prep(model, "pk", pk)])
        row = cursor.fetchone()
    if row is None:
        raise model.DoesNotExist(f"no {model.__name__} with pk {pk}")  # type: ignore[attr-defined]
    return field.to_python(row[0])


def insert(rows: Sequence[Model]) -> None:
    """Store unsaved instances of one model in one INSERT.

    Like ``bulk_create`` without the primary keys read back: an instance
    whose ``pk`` the database assigns keeps None. No signals are sent.
    """
    if not rows:
        return
    model = type(rows[0])
    fields = _insert_fields(model)
    key = ("insert", model, connection.vendor, len(rows))
    sql = _sql_cache.get(key)
    if sql is None:
        table = connection.ops.quote_name(model._meta.db_table)
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        values = ", ".join([row] * len(rows))
        sql = _cache(key, f"INSERT INTO {table} ({columns}) VALUES {values}")

    params = [
        field.get_db_prep_save(field.pre_save(obj, True), connection)
        for obj in rows
        for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    for obj in rows:
        obj._state.adding = False
        obj._state.db = connection.alias


def _filter_shape(name: str, value: Any) -> tuple[str, str]:
    if name.endswith("__lt"):
        return name.removesuffix("__lt"), "lt"
    return name, "isnull" if value is None else "exact"


def _update_sql(
    model: type[Model], where: list[tuple[str, str]], sets: list[tuple[str, bool]]
) -> str:
    quote = connection.ops.quote_name
    assignments = []
    for name, increment in sets:
        column = quote(_field(model, name).column)
        value = f"{column} + %s" if increment else "%s"
        assignments.append(f"{column} = {value}")
    conditions = []
    for name, lookup in where:
        column = quote(_field(model, name).column)
        operator = {"exact": "= %s", "lt": "< %s", "isnull": "IS NULL"}[lookup]
        conditions.append(f"{column} {operator}")
    table = quote(model._meta.db_table)
    return (
        f"UPDATE {table} SET {', '.join(assignments)} WHERE {' AND '.join(conditions)}"
    )


def _insert_fields(model: type[Model]) -> list[Field[Any, Any]]:
    return [
        field
        for field in model._meta.concrete_fields
        if not isinstance(field, _AUTO_FIELDS)
    ]


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    if name == "pk":
        name = model._meta.pk.name
    field = model._meta.get_field(name)
    assert isinstance(field, Field)
    return field


def _prep(model: type[Model], name: str, value: Any) -> Any:
    return _field(model, name).get_db_prep_save(value, connection)


def _cache(key: tuple[Any, ...], sql: str) -> str:
    _sql_cache[key] = sql
    return sql
