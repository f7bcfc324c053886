"""Production settings: the TLS-proxy switch makes `check --deploy` clean; CSP on the admin and
the API docs; docs load nothing from other hosts; `.env` and the SQLite files are 0600."""
import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent


def manage(*args, env_extra: dict, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in {"BEHIND_TLS_PROXY", "DEBUG"}}
    env.update({key: value for key, value in env_extra.items() if value is not None})
    for key in [key for key, value in env_extra.items() if value is None]:
        env.pop(key, None)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def production_env(**extra) -> dict:
    return {"SECRET_KEY": secrets.token_urlsafe(50), "DEBUG": "false",
            "ALLOWED_HOSTS": "notify.example.com", **extra}


def test_check_deploy_is_clean_behind_a_tls_proxy():
    result = manage("check", "--deploy", "--fail-level", "WARNING",
                    env_extra=production_env(NOTIFYHUB_BEHIND_TLS_PROXY="true"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_embedded_mode_checks_clean():
    """No REDIS_URL: the admin lockout counts in the database (axes refuses the file cache)."""
    result = manage("check", "--fail-level", "WARNING", env_extra={"REDIS_URL": None, "DATABASE_URL": None})
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_warns_without_the_switch():
    result = manage("check", "--deploy", env_extra=production_env())
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stdout + result.stderr


def test_behind_the_proxy_http_redirects_and_cookies_are_secure():
    script = ("from django.test import Client\n"
              "c = Client()\n"
              "print(c.get('/admin/login/').status_code)\n"
              "print(c.get('/healthz').status_code)\n"
              "r = c.get('/admin/login/', headers={'X-Forwarded-Proto': 'https'})\n"
              "print(r.status_code, r['Strict-Transport-Security'])\n"
              "print(r.cookies['csrftoken']['secure'])\n"
              "from django.conf import settings; print(settings.SESSION_COOKIE_SECURE)\n")
    result = manage("shell", "--no-imports", "-c", script, env_extra=production_env(
        NOTIFYHUB_BEHIND_TLS_PROXY="true", ALLOWED_HOSTS="testserver"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == "301"  # plain HTTP goes to HTTPS
    assert lines[1] == "200"  # health probes speak plain HTTP inside the network
    assert lines[2].startswith("200 max-age=31536000; includeSubDomains; preload")
    assert lines[3] == "True" and lines[4] == "True"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/admin/login/", "/api/docs/", "/api/redoc/"])
def test_pages_carry_a_content_security_policy(client, path):
    response = client.get(path)
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "object-src 'none'" in policy and "http" not in policy  # no other host is allowed
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    html = response.content.decode()
    for script in re.findall(r"<script[^>]*>", html):
        assert "src=" in script or f'nonce="{nonce}"' in script, f"inline script without the nonce: {script}"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_docs_load_nothing_from_other_hosts(client, path):
    html = client.get(path).content.decode()
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html)
    urls += re.findall(r"""url\(\s*["']?([^"')]+)""", html)
    urls += re.findall(r"""https?://[^\s"'<>)]+""", html)
    assert urls, "the page references its scripts"
    for url in urls:
        parts = urlsplit(url)
        assert not parts.netloc or parts.netloc == "testserver", f"{path} loads {url}"
    assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html
    assert "validator.swagger.io" not in html


def test_make_env_writes_an_owner_only_file(tmp_path):
    os.umask(0o022)
    target = tmp_path / ".env"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_env.py"), str(target)], check=True, cwd=ROOT)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    text = target.read_text()
    assert "SECRET_KEY=" in text and "NOTIFYHUB_SECRETS_KEY=" in text
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_env.py"), str(target)], check=True, cwd=ROOT)
    assert target.read_text() == text  # an existing .env is never overwritten


def test_sqlite_files_are_owner_only(tmp_path):
    env = {"NOTIFYHUB_VAR_DIR": str(tmp_path / "var"), "DATABASE_URL": None, "REDIS_URL": None}
    script = ("from django.db import connection\n"
              "with connection.cursor() as c:\n"
              "    c.execute('create table t (x int)'); c.execute('insert into t values (1)')\n")
    old = os.umask(0o022)
    try:
        result = manage("shell", "--no-imports", "-c", script, env_extra=env)
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    files = list((tmp_path / "var").glob("notifyhub.sqlite3*"))
    assert any(f.name == "notifyhub.sqlite3" for f in files)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
