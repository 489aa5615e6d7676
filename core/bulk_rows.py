"""Writing thousands of new rows in one go: COPY on PostgreSQL, one executemany elsewhere.

Django's bulk_create compiles one statement per ~40 rows on SQLite, and executemany sends
a statement per row even pipelined on PostgreSQL (a 10,000-rule bulk call wrote ~40,000
rows: rules, their references and their audit entries); COPY streams them all in one.
Callers prepare the values as they would for an INSERT (`get_db_prep_save` where needed),
so both paths store the same data. Primary keys are not set on anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connections, models, router


def insert_rows(
    model: type[models.Model], fields: Sequence[models.Field], rows: Iterable[Sequence]
) -> None:
    """INSERT `rows` (values in the order of `fields`) into `model`'s table, in the
    caller's transaction."""
    conn = connections[router.db_for_write(model)]  # not the proxy: a lookup per value
    qn = conn.ops.quote_name
    table = qn(model._meta.db_table)
    columns = ", ".join(qn(f.column) for f in fields)
    with conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            # psycopg 3's COPY, on the raw cursor; errors come out as Django's own (and
            # mark the connection) as from any other query
            with (
                conn.wrap_database_errors,
                cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(
                f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})",
                list(rows),
            )
