"""CSV imports of recipients: store the upload, then stream it in a task, upserting in chunks.

The file is never loaded whole: the encoding check and the reader both stream it. Each chunk of
``IMPORT_CHUNK_ROWS`` good rows costs a constant number of statements (on PostgreSQL: arrays
``unnest``-ed into one UPDATE, one INSERT, one SELECT, and one statement each for contact points
and topic subscriptions). A bad row is written to the rejects file with its reason and never
stops the import; only an unreadable file or a bad header fails it.
"""
import codecs
import csv
import io
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from channels_app.kinds import ChannelKind
from notifyhub.broadcasts.models import Import, ImportStatus, Subscription, Topic
from preferences.models import ContactPoint, Recipient
from preferences.services import RecipientInput, recipients_upsert
from preferences.validators import normalize_phone, timezone_names

IMPORT_CHUNK_ROWS = 1000
PROBE_BYTES = 1 << 20
COLUMNS = ("external_id", "name", "email", "phone", "locale", "timezone", "topics")
NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?")


class ImportFileError(Exception):
    """The whole file cannot be imported (no header, no external_id column...)."""


def _detect_encoding(path: str) -> str:
    """utf-8-sig when the whole file decodes as UTF-8 (streamed), else gb18030."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as stream:
        try:
            while chunk := stream.read(PROBE_BYTES):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "gb18030"
    return "utf-8-sig"


@dataclass
class _Row:
    line: int
    cells: list[str]
    external_id: str = ""
    name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    email: str | None = None
    phone: str | None = None
    data: dict = field(default_factory=dict)
    topics: list[int] = field(default_factory=list)


class _Reader:
    def __init__(self, text: io.TextIOBase):
        self.text = text
        first = text.readline()
        if not first.strip():
            raise ImportFileError("The file is empty; a header row is required.")
        self.delimiter = "\t" if first.count("\t") > first.count(",") else ","
        self.header = [name.strip() for name in next(csv.reader([first], delimiter=self.delimiter))]
        unknown = [n for n in self.header if n not in COLUMNS and not (n.startswith("data.") and len(n) > 5)]
        if unknown:
            raise ImportFileError(f"Unknown columns: {', '.join(unknown)}. Known: {', '.join(COLUMNS)}, data.<key>.")
        if "external_id" not in self.header:
            raise ImportFileError("The header row has no external_id column.")
        if len(set(self.header)) != len(self.header):
            raise ImportFileError("A column name appears twice in the header row.")
        self.index = {name: i for i, name in enumerate(self.header)}
        self.seen: dict[str, int] = {}
        self.topics = dict(Topic.objects.values_list("key", "pk"))
        self.timezones = timezone_names()

    def rows(self) -> Iterator[tuple[_Row, str]]:
        """Every data row with '' or the reason it is rejected."""
        for line, cells in enumerate(csv.reader(self.text, delimiter=self.delimiter), start=2):
            if not any(cell.strip() for cell in cells):
                continue
            row = _Row(line=line, cells=cells)
            yield row, self._check(row)

    def _check(self, row: _Row) -> str:  # noqa: C901 — one check per column
        cells = row.cells
        if len(cells) != len(self.header):
            return f"expected {len(self.header)} columns, found {len(cells)}"
        value = {name: cells[i].strip() for name, i in self.index.items()}
        row.external_id = value["external_id"]
        if not row.external_id:
            return "missing external_id"
        if len(row.external_id) > 255:
            return "external_id longer than 255 characters"
        first = self.seen.get(row.external_id)
        if first is not None:
            return f"duplicate external_id (first on line {first})"
        self.seen[row.external_id] = row.line
        if value.get("email"):
            try:
                validate_email(value["email"])
            except ValidationError:
                return f"bad email {value['email']!r}"
            local, _, domain = value["email"].rpartition("@")
            row.email = f"{local}@{domain.lower()}"
        if value.get("phone"):
            try:
                row.phone = normalize_phone(value["phone"])
            except ValidationError:
                return f"bad phone {value['phone']!r}: not a valid E.164 number (e.g. +8613800138000)"
        if value.get("timezone"):
            if value["timezone"] not in self.timezones:
                return f"unknown timezone {value['timezone']!r}"
            row.timezone = value["timezone"]
        for name, limit in (("name", 255), ("locale", 35)):
            if value.get(name):
                if len(value[name]) > limit:
                    return f"{name} longer than {limit} characters"
                setattr(row, name, value[name])
        for key in value.get("topics", "").split(";"):
            key = key.strip()
            if key:
                if key not in self.topics:
                    return f"unknown topic {key!r}"
                row.topics.append(self.topics[key])
        for name, cell in value.items():
            if name.startswith("data.") and cell:
                row.data[name[5:]] = _scalar(cell)
        return ""


def _scalar(cell: str):
    """Numbers become JSON numbers (so segments compare them as numbers); "007" stays text."""
    if NUMBER.fullmatch(cell):
        return float(cell) if "." in cell else int(cell)
    return cell


def import_run(*, import_id: int) -> str:
    """Read the stored file and upsert its rows; idempotent (a second run finds it claimed)."""
    claimed = Import.objects.filter(pk=import_id, status=ImportStatus.QUEUED).update(
        status=ImportStatus.RUNNING, started_at=timezone.now())
    if not claimed:
        return "not queued"
    record = Import.objects.get(pk=import_id)
    try:
        _import_file(record)
    except Exception as exc:  # the file as a whole failed; the operator reads why on the import's page
        error = str(exc) if isinstance(exc, ImportFileError) else f"{type(exc).__name__}: {exc}"
        Import.objects.filter(pk=import_id).update(status=ImportStatus.FAILED, error=error,
                                                   finished_at=timezone.now())
        if not isinstance(exc, ImportFileError | UnicodeDecodeError):
            raise
        return "failed"
    return "done"


def _import_file(record: Import) -> None:
    path = record.file.path
    encoding = _detect_encoding(path)
    rejects_name = f"rejects/import-{record.pk}-{uuid.uuid4().hex[:8]}-rejects.csv"
    rejects_path = Path(record.rejects_file.storage.path(rejects_name))
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "rb") as binary, open(rejects_path, "w", encoding="utf-8-sig", newline="") as out:
        reader = _Reader(io.TextIOWrapper(binary, encoding=encoding, newline=""))
        Import.objects.filter(pk=record.pk).update(encoding=encoding, delimiter=reader.delimiter)
        writer = csv.writer(out)
        writer.writerow(["line", "reason", *reader.header])
        chunk: list[_Row] = []
        read = rejected = 0
        for row, reason in reader.rows():
            read += 1
            if reason:
                rejected += 1
                writer.writerow([row.line, reason, *row.cells])
            else:
                chunk.append(row)
            if len(chunk) >= IMPORT_CHUNK_ROWS:
                _chunk_finish(record, chunk, read, rejected, binary.tell())
                chunk, read, rejected = [], 0, 0
        if read:
            _chunk_finish(record, chunk, read, rejected, record.size_bytes)
    any_rejected = Import.objects.filter(pk=record.pk, rejected__gt=0).exists()
    Import.objects.filter(pk=record.pk).update(
        status=ImportStatus.DONE, finished_at=timezone.now(), rejects_file=rejects_name if any_rejected else "")


def _chunk_finish(record: Import, chunk: list[_Row], read: int, rejected: int, position: int) -> None:
    with transaction.atomic():
        created, updated = _rows_upsert(chunk) if chunk else (0, 0)
        Import.objects.filter(pk=record.pk).update(
            rows_read=F("rows_read") + read, rejected=F("rejected") + rejected, created=F("created") + created,
            updated=F("updated") + updated, bytes_read=position)


def _rows_upsert(rows: list[_Row]) -> tuple[int, int]:
    if connection.vendor != "postgresql":
        return _rows_upsert_portable(rows)
    table, contacts, subscriptions = (Recipient._meta.db_table, ContactPoint._meta.db_table,
                                      Subscription._meta.db_table)
    ids = [r.external_id for r in rows]
    columns = [ids, [r.name for r in rows], [r.locale for r in rows], [r.timezone for r in rows],
               [json.dumps(r.data) if r.data else None for r in rows]]
    with connection.cursor() as cursor:
        # Existing recipients: given fields replace, data keys merge; only rows that change count.
        cursor.execute(f"""
            UPDATE {table} AS r SET name = COALESCE(i.name, r.name), locale = COALESCE(i.locale, r.locale),
                timezone = COALESCE(i.timezone, r.timezone), data = r.data || COALESCE(i.data, '{{}}'::jsonb),
                updated_at = now()
            FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::jsonb[])
                AS i(external_id, name, locale, timezone, data)
            WHERE r.external_id = i.external_id AND (
                r.name IS DISTINCT FROM COALESCE(i.name, r.name)
                OR r.locale IS DISTINCT FROM COALESCE(i.locale, r.locale)
                OR r.timezone IS DISTINCT FROM COALESCE(i.timezone, r.timezone)
                OR NOT r.data @> COALESCE(i.data, '{{}}'::jsonb))
        """, columns)  # noqa: S608 — table names are ours
        updated = cursor.rowcount
        cursor.execute(f"""
            INSERT INTO {table} (external_id, name, locale, timezone, data, created_at, updated_at)
            SELECT i.external_id, COALESCE(i.name, ''), COALESCE(i.locale, ''), COALESCE(i.timezone, ''),
                COALESCE(i.data, '{{}}'::jsonb), now(), now()
            FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::jsonb[])
                AS i(external_id, name, locale, timezone, data)
            ON CONFLICT (external_id) DO NOTHING
        """, columns)  # noqa: S608
        created = cursor.rowcount
        cursor.execute(f"SELECT external_id, id FROM {table} WHERE external_id = ANY(%s)", [ids])  # noqa: S608
        pks = dict(cursor.fetchall())
        wanted = [(pks[r.external_id], kind, address) for r in rows
                  for kind, address in ((ChannelKind.EMAIL.value, r.email), (ChannelKind.SMS.value, r.phone))
                  if address]
        if wanted:
            arrays = [list(column) for column in zip(*wanted, strict=True)]
            # The given address becomes the contact point of its kind; the same address keeps its state.
            cursor.execute(f"""
                DELETE FROM {contacts} AS c USING unnest(%s::bigint[], %s::text[], %s::text[]) AS w(rid, kind, address)
                WHERE c.recipient_id = w.rid AND c.kind = w.kind AND c.address <> w.address
            """, arrays)  # noqa: S608
            cursor.execute(f"""
                INSERT INTO {contacts} (recipient_id, kind, address, app, label, active, deactivated_reason, created_at)
                SELECT rid, kind, address, '', '', true, '', now()
                FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS w(rid, kind, address)
                ON CONFLICT (recipient_id, kind, address) DO NOTHING
            """, arrays)  # noqa: S608
        pairs = [(topic, pks[r.external_id]) for r in rows for topic in r.topics]
        if pairs:
            cursor.execute(f"""
                INSERT INTO {subscriptions} (topic_id, recipient_id, created_at)
                SELECT t, r, now() FROM unnest(%s::bigint[], %s::bigint[]) AS p(t, r)
                ON CONFLICT DO NOTHING
            """, [[t for t, _ in pairs], [r for _, r in pairs]])  # noqa: S608
    return created, updated


def _rows_upsert_portable(rows: list[_Row]) -> tuple[int, int]:
    """SQLite (the embedded default): the shared upsert service, data keys merged first."""
    existing = Recipient.objects.in_bulk([r.external_id for r in rows], field_name="external_id")
    items = [RecipientInput(
        external_id=r.external_id, name=r.name, locale=r.locale, timezone=r.timezone,
        data={**existing[r.external_id].data, **r.data} if r.external_id in existing and r.data else r.data or None,
        contacts={kind: address for kind, address in (("email", r.email), ("sms", r.phone)) if address},
    ) for r in rows]
    recipients = recipients_upsert(items=items)
    Subscription.objects.bulk_create(
        [Subscription(topic_id=t, recipient=recipients[r.external_id]) for r in rows for t in r.topics],
        ignore_conflicts=True)
    created = sum(1 for r in rows if r.external_id not in existing)
    return created, len(rows) - created
