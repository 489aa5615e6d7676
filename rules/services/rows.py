"""Raw row writes for thousands of rules: one INSERT/UPDATE executemany or a few DELETEs,
where the ORM would build per-row CASEs or load and signal every row. They send no signals:
callers record audit entries themselves."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from django.db import connection, connections, models, router
from django.db.models import CASCADE, Model

from core.bulk_rows import insert_rows

BULK_CHUNK = 500  # ids per IN (...) query: far below every backend's parameter limit


def chunks(items: Sequence, size: int = BULK_CHUNK) -> Iterator[Sequence]:
    """`items` in slices short enough for one IN (...) list."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_model_rows(model: type[Model], objs: Sequence[Model]) -> None:
    """INSERT new rows in one go (core.bulk_rows); their pks are NOT set.

    Fields get the same pre_save/prep as in bulk_create (auto_now, defaults, JSON
    adaptation), so rows are identical.
    """
    if not objs:
        return
    conn = connections[router.db_for_write(model)]
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    plain = [_is_plain(f) for f in fields]
    insert_rows(
        model,
        fields,
        (
            [
                getattr(obj, f.attname) if p else f.get_db_prep_save(f.pre_save(obj, True), conn)
                for f, p in zip(fields, plain, strict=True)
            ]
            for obj in objs
        ),
    )


_PLAIN_TYPES = (
    models.CharField,
    models.TextField,
    models.BooleanField,
    models.IntegerField,
    models.PositiveIntegerField,
    models.BigIntegerField,
)


def _is_plain(model_field: models.Field) -> bool:
    """A field stored as its (already cleaned) Python value on every backend: no prep needed.

    Skipping Django's per-value prep for these halves the cost of building 10,000 rows.
    """
    if isinstance(model_field, models.ForeignKey):
        target = model_field.target_field
        return _is_plain(target) or isinstance(target, models.AutoField | models.BigAutoField)
    return type(model_field) in _PLAIN_TYPES


def update_rows(model: type[Model], objs: Sequence[Model], fields: Sequence[str]) -> None:
    """UPDATE many rows with one executemany: Django's bulk_update builds a CASE per field and
    row and takes seconds for a few thousand rows (renumbering a 10,000-rule set)."""
    if not objs:
        return
    conn = connections[router.db_for_write(model)]
    qn = conn.ops.quote_name
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    sql = (
        f"UPDATE {qn(meta.db_table)} SET {', '.join(f'{qn(c.column)} = %s' for c in columns)} "
        f"WHERE {qn(meta.pk.column)} = %s"
    )
    params = [
        [c.get_db_prep_save(getattr(obj, c.attname), conn) for c in columns] + [obj.pk]
        for obj in objs
    ]
    with conn.cursor() as cursor:
        cursor.executemany(sql, params)


def delete_rows(model: type[Model], ids: Sequence[int], field: str = "pk") -> None:
    """DELETE the rows whose `field` is in `ids`, and the rows that cascade from them.

    Django's delete() loads and signals every row (and every link row) one by one; that is
    minutes for thousands of rules. Bulk writes send no signals: the caller records them.
    Falls back to the ORM unless every dependent is a plain cascade without dependents.
    """
    meta = model._meta
    dependents = [rel for rel in meta.related_objects if not rel.many_to_many]
    plain = all(
        rel.on_delete is CASCADE and not rel.related_model._meta.related_objects
        for rel in dependents
    )
    if not plain or (dependents and field != "pk"):
        for chunk in chunks(ids):
            model.objects.filter(**{f"{field}__in": chunk}).delete()
        return
    qn = connection.ops.quote_name
    column = meta.pk.column if field == "pk" else meta.get_field(field).column
    with connection.cursor() as cursor:
        for chunk in chunks(ids):
            marks = ", ".join(["%s"] * len(chunk))
            for rel in dependents:
                cursor.execute(
                    f"DELETE FROM {qn(rel.related_model._meta.db_table)} "
                    f"WHERE {qn(rel.field.column)} IN ({marks})",
                    list(chunk),
                )
            cursor.execute(
                f"DELETE FROM {qn(meta.db_table)} WHERE {qn(column)} IN ({marks})", list(chunk)
            )
