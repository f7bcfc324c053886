"""Writing many new rows at once with PostgreSQL's ``COPY``.

Django's ``bulk_create`` prepares every value of every row through the field machinery and
sends one huge INSERT; for the thousands of deliveries and events a dispatch chunk writes that
is most of the chunk's time. ``COPY … FROM STDIN`` (psycopg 3's ``cursor.copy``) streams the
rows with the driver's own adapters instead. Other databases (the embedded SQLite default) use
``bulk_create``. ``COPY`` has no ``ON CONFLICT``: use it only for rows that cannot exist yet.
"""
from collections.abc import Sequence

from django.db import connection, models
from psycopg.types.json import Jsonb


def rows_copy(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """Insert ``objs`` (with their primary keys set, or a serial key left to the database)."""
    if not objs:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objs)
        return
    fields = [f for f in model._meta.concrete_fields
              if not (f.primary_key and isinstance(f, models.AutoField))]
    json_fields = {f.attname for f in fields if isinstance(f, models.JSONField)}
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for obj in objs:
            copy.write_row([Jsonb(getattr(obj, f.attname)) if f.attname in json_fields
                            else getattr(obj, f.attname) for f in fields])
