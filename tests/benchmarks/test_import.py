"""CSV import throughput: a generated 100,000-row file (1% bad rows of several kinds) imported by a
real Celery worker on PostgreSQL. Run with ``make bench PYTEST_ARGS="-k import"``; prints rows/s,
the worker's peak RSS and the machine. Targets: ≤ 60 s, ≤ 300 MB."""
import csv
import os
import time
from pathlib import Path

import pytest
from django.core.files import File

from notifyhub.broadcasts.models import Import, Topic
from notifyhub.broadcasts.services import import_create
from preferences.models import Recipient
from tests.benchmarks.test_throughput import machine
from tests.conftest import wait_until

pytestmark = [pytest.mark.benchmark, pytest.mark.services, pytest.mark.django_db(transaction=True),
              pytest.mark.timeout(900)]

ROWS = 100_000
BAD = [["", "no id", "", "", "", "", "", ""], ["b-email", "x", "nope@", "", "", "", "", ""],
       ["b-phone", "x", "", "555", "", "", "", ""], ["b-tz", "x", "", "", "", "Mars/Base", "", ""]]


def generate(path: Path) -> int:
    bad = 0
    with open(path, "w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["external_id", "name", "email", "phone", "locale", "timezone", "data.vip_level", "topics"])
        for i in range(ROWS):
            if i % 100 == 50:
                writer.writerow(BAD[(i // 100) % len(BAD)])
                bad += 1
            else:
                writer.writerow([f"bench-{i:06}", f"用户 {i}", f"user{i}@example.com",
                                 f"+86138{i:08}" if i % 2 else "", "zh-CN", "Asia/Shanghai", i % 7,
                                 "bench-news" if i % 4 == 0 else ""])
    return bad


def peak_rss_mb(pgid: int) -> float:
    """The largest VmHWM (peak resident set) among the worker's processes."""
    peak = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except (OSError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak / 1024


def test_import_100k_rows(start_worker, tmp_path):
    Topic.objects.create(key="bench-news", name="Bench news")
    path = tmp_path / "recipients.csv"
    bad = generate(path)
    worker = start_worker(beat=False, concurrency=1)
    with open(path, "rb") as stream:
        record = import_create(upload=File(stream, name="recipients.csv"))
    start = time.monotonic()
    wait_until(lambda: Import.objects.filter(pk=record.pk, status__in=("done", "failed")).exists(), timeout=600,
               interval=0.5, message="import finished")
    wall = time.monotonic() - start
    record.refresh_from_db()
    rss = peak_rss_mb(worker.proc.pid)
    assert record.status == "done", record.error
    assert (record.rows_read, record.created, record.rejected) == (ROWS, ROWS - bad, bad)
    assert Recipient.objects.count() == ROWS - bad
    task = (record.finished_at - record.started_at).total_seconds()
    print(f"\nmachine: {machine()}")
    print(f"import of {ROWS:,} rows ({path.stat().st_size / 1e6:.1f} MB, {bad} bad): {task:.1f} s in the task, "
          f"{wall:.1f} s wall, {ROWS / task:,.0f} rows/s; worker peak RSS {rss:.0f} MB")
    assert task <= 60 and rss <= 300
