"""The README's run command on a fresh copy of the repository, tried as a new user would:
start it, run the printed curl line, see the message sent in the API and the admin, Ctrl-C."""
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port, wait_until

pytestmark = pytest.mark.timeout(400)


def fresh_copy(dest: Path) -> Path:
    """The files a clone would have (tracked and not ignored), without venvs, databases or .env."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def test_make_run_then_the_printed_curl_line_sends_a_message(tmp_path):
    if shutil.which("make") is None or shutil.which("curl") is None:
        pytest.fail("make and curl are needed for the README's run command")
    repo = fresh_copy(tmp_path / "notifyhub")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("NOTIFYHUB_", "DATABASE_", "REDIS_", "CELERY_")) or k in ("SECRET_KEY",
                                                                                            "DJANGO_SETTINGS_MODULE"))}
    env["NOTIFYHUB_PORT"] = str(port)
    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log:
        # The virtualenv the suite runs in is reused so the test does not download the requirements again.
        proc = subprocess.Popen(["make", "run", f"VENV={ROOT / '.venv'}"], cwd=repo, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        curl = wait_until(lambda: re.search(r"^CURL: (.+)$", log_path.read_text(), re.M), timeout=180,
                          message=f"the curl line; log:\n{log_path.read_text()[-2000:]}").group(1)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _get(f"{base}/healthz"), timeout=60, message="the web server")
        assert (repo / ".env").exists() and (repo / "var" / "notifyhub.sqlite3").exists()

        sent = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=30)
        message_id = re.search(r'"id":"([0-9a-f-]{36})"', sent.stdout).group(1)
        key = re.search(r"Api-Key ([\w.]+)", curl).group(1)

        def message():
            request = urllib.request.Request(f"{base}/api/v1/messages/{message_id}",
                                             headers={"Authorization": f"Api-Key {key}"})
            body = _get_json(request)
            done = body and {d["channel"]: d["status"] for d in body["deliveries"]} == {"email": "sent",
                                                                                        "inapp": "sent"}
            # The message's own status is rolled up just after the last outcome is written.
            return body if done and body["status"] == "sent" else None

        body = wait_until(message, timeout=90, message=f"both deliveries sent; log:\n{log_path.read_text()[-3000:]}")
        assert body["status"] == "sent"

        password = re.search(r"user: operator\s+password: (\S+)", log_path.read_text()).group(1)
        session = requests.Session()
        login = f"{base}/admin/login/"
        session.get(login)
        session.post(login, data={"username": "operator", "password": password, "next": "/admin/",
                                  "csrfmiddlewaretoken": session.cookies["csrftoken"]}, headers={"Referer": login})
        page = session.get(f"{base}/admin/messaging/message/{message_id}/change/")
        assert page.status_code == 200 and "welcome" in page.text
        assert page.text.count(">Sent<") + page.text.count(">sent<") >= 2, "deliveries shown as sent in the admin"
        assert "Welcome to notifyhub, Demo" in log_path.read_text(), "the console e-mail is printed"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("Ctrl-C did not stop everything within 30 s") from None
    time.sleep(1)
    assert not _get(f"http://127.0.0.1:{port}/healthz"), "the web server still answers after Ctrl-C"


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _get_json(request):
    import json

    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None
