"""CSV imports: a real worker streams the file and upserts in chunks; bad rows land in the rejects
CSV with their reason and never stop the import; encodings and delimiters are detected."""
import csv
import io
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifyhub.broadcasts.imports import IMPORT_CHUNK_ROWS, import_run
from notifyhub.broadcasts.models import Import, ImportStatus, Subscription, Topic
from notifyhub.broadcasts.services import import_create_from_text
from preferences.models import ContactPoint, Recipient
from tests import factories
from tests.conftest import wait_until

HEADER = ["external_id", "name", "email", "phone", "locale", "timezone", "data.city", "data.vip_level", "topics"]
BAD = [  # (row, reason fragment)
    (["", "No id", "x@example.com", "", "", "", "", "", ""], "missing external_id"),
    (["bad-email", "B", "not-an-email", "", "", "", "", "", ""], "bad email"),
    (["bad-phone", "P", "", "12345", "", "", "", "", ""], "bad phone"),
    (["bad-tz", "T", "", "", "", "Mars/Olympus", "", "", ""], "unknown timezone"),
    (["bad-topic", "T", "", "", "", "", "", "", "nope"], "unknown topic"),
    (["short", "S"], "expected 9 columns"),
]


def rows(n: int) -> list[list[str]]:
    """``n`` good rows with every kind of bad row spread among them, and one id given twice."""
    table = [[f"imp-{i:05}", f"用户{i}", f"u{i}@Example.com", "+8613800138000" if i % 2 else "", "zh-CN",
              "Asia/Shanghai", "上海", str(i % 5), "news;vip" if i % 3 == 0 else ""] for i in range(n)]
    step = n // (len(BAD) + 1)
    for k, (bad, _) in reversed(list(enumerate(BAD, start=1))):
        table.insert(k * step, bad)
    table.append(["imp-00001", "dup", "", "", "", "", "", "", ""])
    return table


def csv_bytes(table, *, encoding="utf-8", delimiter=","):
    text = io.StringIO()
    csv.writer(text, delimiter=delimiter, lineterminator="\n").writerows([HEADER, *table])
    return text.getvalue().encode(encoding)


def rejects(record: Import) -> list[dict]:
    record.refresh_from_db()
    with record.rejects_file.open("rb") as stream:
        return list(csv.DictReader(io.StringIO(stream.read().decode("utf-8-sig"))))


@pytest.fixture
def topics(db):
    return Topic.objects.create(key="news", name="News"), Topic.objects.create(key="vip", name="VIP")


@pytest.mark.services
@pytest.mark.parametrize("encoding, delimiter", [("utf-8", ","), ("utf-8-sig", "\t"), ("gb18030", ",")])
def test_worker_imports_good_rows_and_rejects_bad_ones_with_reasons(start_worker, api, topics, encoding, delimiter):
    start_worker(beat=False, concurrency=1)
    table = rows(2500)
    expected_bad = len(BAD) + 1
    response = api.post("/api/v1/imports", {"file": io.BytesIO(csv_bytes(table, encoding=encoding,
                                                                        delimiter=delimiter))},
                        format="multipart")
    assert response.status_code == 202, response.json()
    import_id = response.json()["id"]
    body = wait_until(lambda: (api.get(f"/api/v1/imports/{import_id}").json() if api.get(
        f"/api/v1/imports/{import_id}").json()["status"] in ("done", "failed") else None), timeout=90,
        message="import finished")
    assert body["status"] == "done", body
    assert body["encoding"] == ("gb18030" if encoding == "gb18030" else "utf-8-sig")
    assert body["delimiter"] == delimiter
    assert (body["rows_read"], body["created"], body["rejected"]) == (len(table), 2500, expected_bad)
    assert Recipient.objects.filter(external_id__startswith="imp-").count() == 2500
    r = Recipient.objects.get(external_id="imp-00003")
    assert (r.name, r.locale, r.timezone) == ("用户3", "zh-CN", "Asia/Shanghai")
    assert r.data == {"city": "上海", "vip_level": 3}  # a number, so segments compare it as one
    assert set(r.contact_points.values_list("kind", "address")) == {("email", "u3@example.com"),
                                                                   ("sms", "+8613800138000")}
    assert set(r.topic_subscriptions.values_list("topic__key", flat=True)) == {"news", "vip"}
    assert Subscription.objects.filter(topic=topics[0]).count() == len(range(0, 2500, 3))
    reasons = rejects(Import.objects.get(pk=import_id))
    assert len(reasons) == expected_bad
    for _, fragment in BAD:
        assert any(fragment in row["reason"] for row in reasons), fragment
    assert any(row["reason"].startswith("duplicate external_id (first on line") for row in reasons)
    download = api.get(f"/api/v1/imports/{import_id}/rejects")
    assert download.status_code == 200 and b"missing external_id" in b"".join(download.streaming_content)


@pytest.mark.django_db
def test_existing_recipients_are_updated_and_their_data_merged(topics):
    factories.recipient(external_id="old", name="Old", data={"plan": "pro", "vip_level": 1})
    record = import_create_from_text(text="external_id,name,data.vip_level\nold,New name,4\nfresh,,\n")
    assert import_run(import_id=record.pk) == "done"
    record.refresh_from_db()
    assert (record.status, record.rows_read, record.created, record.updated, record.rejected) == ("done", 2, 1, 1, 0)
    old = Recipient.objects.get(external_id="old")
    assert old.name == "New name" and old.data == {"plan": "pro", "vip_level": 4}
    assert Recipient.objects.get(external_id="fresh").name == ""
    assert not record.rejects_file
    assert import_run(import_id=record.pk) == "not queued"  # a second delivery of the task is a no-op


@pytest.mark.django_db
@pytest.mark.parametrize("text, error", [
    ("name,email\nA,a@example.com\n", "no external_id column"),
    ("external_id,shoe\nA,42\n", "Unknown columns: shoe"),
    ("\n", "empty"),
])
def test_a_bad_header_fails_the_import_with_the_reason(text, error):
    record = import_create_from_text(text=text)
    assert import_run(import_id=record.pk) == "failed"
    record.refresh_from_db()
    assert record.status == ImportStatus.FAILED and error in record.error
    assert not Recipient.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("body, field", [({}, "file"), ({"content": "  "}, "content"), ({"content": 5}, "content")])
def test_bad_import_requests_answer_400_and_write_nothing(api, body, field):
    response = api.post("/api/v1/imports", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not Import.objects.exists()


@pytest.mark.django_db
def test_json_import_is_queued_on_commit(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post("/api/v1/imports", data=json.dumps({"content": "external_id\nx\n", "filename": "a.csv"}),
                            content_type="application/json")
    assert response.status_code == 202 and response.json()["status"] == "queued" and len(callbacks) == 1
    assert response.json()["original_name"] == "a.csv"


@pytest.mark.services
@pytest.mark.django_db
def test_statements_per_chunk_do_not_depend_on_its_size(topics):
    """Set-based SQL: a chunk of 10 rows and a chunk of 1,000 cost the same statements."""
    def run(n, tag):
        text = "external_id,email,phone,data.n,topics\n" + "".join(
            f"{tag}{i},{tag}{i}@example.com,+8613800138000,{i},news\n" for i in range(n))
        record = import_create_from_text(text=text)
        with CaptureQueriesContext(connection) as queries:
            import_run(import_id=record.pk)
        record.refresh_from_db()
        assert (record.created, record.rejected) == (n, 0)
        return len(queries)

    one_chunk = run(10, "s")
    assert run(IMPORT_CHUNK_ROWS, "l") == one_chunk
    assert ContactPoint.objects.filter(kind="sms").count() == 10 + IMPORT_CHUNK_ROWS
    per_chunk = run(2 * IMPORT_CHUNK_ROWS, "m") - one_chunk
    assert run(3 * IMPORT_CHUNK_ROWS, "x") == one_chunk + 2 * per_chunk


@pytest.mark.services
def test_admin_upload_shows_progress_while_running_and_the_rejects_at_the_end(start_worker, admin_client, topics):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    start_worker(beat=False, concurrency=1)
    upload = SimpleUploadedFile("crowd.csv", csv_bytes(rows(20000), encoding="gb18030"), content_type="text/csv")
    response = admin_client.post(reverse("admin:broadcasts_import_add"), {"file": upload})
    assert response.status_code == 302, response.content.decode()[:2000]
    record = Import.objects.get()
    page = admin_client.get(response.url).content.decode()
    assert '<progress max="100"' in page and reverse("admin:broadcasts_import_status", args=[record.pk]) in page
    status_url = reverse("admin:broadcasts_import_status", args=[record.pk])
    seen = set()

    def finished():
        state = admin_client.get(status_url).json()
        if state["status"] == "running":
            seen.add(state["progress"])
        return state["status"] in ("done", "failed") and state

    state = wait_until(finished, timeout=120, interval=0.05, message="import finished")
    assert state["status"] == "done" and state["progress"] == 100 and state["rejected"] == len(BAD) + 1
    assert any(0 < p < 100 for p in seen), seen  # the bar moved while it ran
    page = admin_client.get(reverse("admin:broadcasts_import_change", args=[record.pk])).content.decode()
    assert 'data-active="0"' in page and "rejected row(s) with reasons" in page
    download = admin_client.get(reverse("admin:broadcasts_import_rejects", args=[record.pk]))
    text = b"".join(download.streaming_content).decode("utf-8-sig")
    assert text.startswith("line,reason,external_id") and "unknown timezone 'Mars/Olympus'" in text
    assert admin_client.get(reverse("admin:broadcasts_import_changelist")).status_code == 200
