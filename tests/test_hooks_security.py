"""Provider callbacks: account names cannot be probed, the callback token may travel in the
path, and no token reaches gunicorn's access log or Django's log."""
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from notifyhub.log_redaction import redact
from tests import factories
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = secrets.token_urlsafe(24)
REPORT = [{"phone_number": "13800138000", "send_time": "2024-05-01 10:00:00", "report_time": "2024-05-01 10:00:08",
           "success": True, "err_code": "DELIVERED", "err_msg": "ok", "sms_size": "1",
           "biz_id": "900619746936498440^0", "out_id": "d-1"}]


def aliyun_account(name: str = "aliyun-main"):
    return factories.channel(name=name, kind="sms", backend="aliyun", options={
        "access_key_id": "LTAI5tExample", "sign_name": "Test", "endpoint": "http://127.0.0.1:9"},
        secrets={"access_key_secret": "s" * 30, "callback_token": TOKEN})


def post(client, path: str):
    return client.post(path, data=json.dumps(REPORT), content_type="application/json")


@pytest.mark.django_db
def test_unknown_account_answers_like_a_bad_token(client):
    aliyun_account()
    factories.inapp_channel(name="inbox")
    unknown = post(client, "/hooks/channels/no-such-account/")
    bad_token = post(client, "/hooks/channels/aliyun-main/?token=wrong-token-0123456789")
    takes_none = post(client, "/hooks/channels/inbox/")
    assert unknown.status_code == bad_token.status_code == takes_none.status_code == 403
    assert unknown.content == bad_token.content == takes_none.content


@pytest.mark.django_db
def test_token_in_the_path_or_the_query(client):
    aliyun_account()
    assert post(client, f"/hooks/channels/aliyun-main/{TOKEN}/").status_code == 200
    assert post(client, f"/hooks/channels/aliyun-main/?token={TOKEN}").status_code == 200  # the older form
    assert post(client, "/hooks/channels/aliyun-main/wrong-token-0123456789/").status_code == 403
    assert post(client, "/hooks/channels/aliyun-main/").status_code == 403


@pytest.mark.parametrize("line", [
    f"POST /hooks/channels/aliyun-main/?token={TOKEN} HTTP/1.1",
    f"POST /hooks/channels/aliyun-main/?a=1&token={TOKEN}&b=2 HTTP/1.1",
    f"POST /hooks/channels/aliyun-main/?callback_token={TOKEN}",
    f"POST /hooks/channels/aliyun-main/{TOKEN}/ HTTP/1.1",
    f"Forbidden: /hooks/channels/aliyun-main/{TOKEN}/",
])
def test_redact_removes_the_token(line):
    cleaned = redact(line)
    assert TOKEN not in cleaned and "[redacted]" in cleaned and "aliyun-main" in cleaned


@pytest.mark.django_db(transaction=True)
def test_gunicorn_access_log_and_django_log_carry_no_token(tmp_path):
    """A real gunicorn, started as `make run` and the container do (config read from the
    working directory), logs every callback without its token."""
    from django.db import connection

    aliyun_account()
    db = connection.settings_dict
    port = free_port()
    access_log, error_log = tmp_path / "access.log", tmp_path / "error.log"
    env_db = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": env_db}
    with open(error_log, "w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "notifyhub.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
             "--access-logfile", str(access_log), "--error-logfile", "-"],
            cwd=ROOT, env=env, stdout=stderr, stderr=stderr)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    requests.get(f"{base}/healthz", timeout=2)
                    break
                except requests.ConnectionError:
                    assert time.monotonic() < deadline, error_log.read_text()
                    time.sleep(0.2)
            answers = [requests.post(f"{base}{path}", json=REPORT, timeout=10).status_code for path in (
                f"/hooks/channels/aliyun-main/?token={TOKEN}", f"/hooks/channels/aliyun-main/{TOKEN}/",
                f"/hooks/channels/aliyun-main/{TOKEN}x/", f"/hooks/channels/aliyun-main/?token={TOKEN}x")]
            assert answers == [200, 200, 403, 403]
        finally:
            server.terminate()
            server.wait(timeout=30)
    logged = access_log.read_text()
    assert logged.count("/hooks/channels/aliyun-main/") == 4, logged
    assert TOKEN not in logged and "[redacted]" in logged
    assert "Forbidden" in error_log.read_text() or "Rejected callback" in error_log.read_text()
    assert TOKEN not in error_log.read_text()
