"""An oversized body gets a readable 413 JSON answer through gunicorn, run as the Procfile runs
it, with ``requests`` and ``curl`` (``Expect: 100-continue`` included) — not a reset connection."""
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port, worker_env

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def gunicorn(services, tmp_path_factory):
    port = free_port()
    web = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    args = shlex.split(web.removeprefix("web:").replace("${NOTIFYHUB_PORT}", str(port)))
    assert args[0] == "gunicorn"
    log = tmp_path_factory.mktemp("gunicorn") / "web.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), *args[1:]], cwd=ROOT,
                                env=worker_env(NOTIFYHUB_PORT=port), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}/healthz", timeout=5)
            break
        except requests.RequestException:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"gunicorn did not start:\n{log.read_text()[-2000:]}")
    yield base
    proc.terminate()
    proc.wait(10)


def _body(size: int) -> bytes:
    return json.dumps({"template": "x", "to": ["a"], "context": {"pad": "x" * size}}).encode()


@pytest.mark.parametrize("size", [600_000, 3_000_000, 12_000_000])
@pytest.mark.parametrize("connection", ["keep-alive", "close"])
def test_requests_gets_a_413_json_answer(gunicorn, size, connection):
    for _ in range(3):  # a reset shows up intermittently: try more than once
        response = requests.post(f"{gunicorn}/api/v1/messages", data=_body(size), timeout=30,
                                 headers={"Content-Type": "application/json", "Connection": connection,
                                          "Authorization": "Api-Key nope"})
        assert response.status_code == 413
        assert "limit is 524288 bytes" in response.json()["body"][0]


@pytest.mark.parametrize("size", [600_000, 3_000_000])
@pytest.mark.parametrize("expect", [None, "Expect: 100-continue", "Expect:"])
def test_curl_gets_a_413_json_answer(gunicorn, tmp_path, size, expect):
    path = tmp_path / "body.json"
    path.write_bytes(_body(size))
    command = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", "-H", "Content-Type: application/json",
               "--data-binary", f"@{path}", f"{gunicorn}/api/v1/messages"]
    if expect:
        command[1:1] = ["-H", expect]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "413"
    assert "limit is 524288 bytes" in json.loads(body)["body"][0]
