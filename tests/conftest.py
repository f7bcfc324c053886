"""Shared fixtures: real services (PostgreSQL, Redis, Celery worker processes), real peers
(an aiosmtpd SMTP server, pytest-httpserver), and factories for the domain."""
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings

from tests import factories

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_SERVICES = os.environ.get("NOTIFYHUB_REQUIRE_SERVICES") == "1"
ALL_QUEUES = ",".join(["default", "dispatch", "maintenance"] + [
    f"deliver.{kind}{lane}" for kind in ("email", "inapp", "webhook", "sms", "push", "wechat", "chat")
    for lane in (".tx", "")])


def pytest_addoption(parser):
    parser.addoption("--benchmarks", action="store_true", help="run tests/benchmarks (slow, prints figures)")


def pytest_ignore_collect(collection_path, config):
    """Benchmarks are not part of the test run; `make bench` collects them with --benchmarks."""
    if "benchmarks" in collection_path.parts and not config.getoption("--benchmarks"):
        return True
    return None


def _services_missing() -> str:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return "DATABASE_URL does not point to PostgreSQL"
    if not settings.REDIS_URL:
        return "REDIS_URL is not set"
    try:
        import redis

        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping()
    except Exception as exc:
        return f"Redis at {settings.REDIS_URL} does not answer: {exc}"
    return ""


@pytest.fixture(scope="session")
def services():
    """Require PostgreSQL and Redis; skip with the reason (or fail, when CI requires them)."""
    missing = _services_missing()
    if missing:
        if REQUIRE_SERVICES:
            pytest.fail(f"NOTIFYHUB_REQUIRE_SERVICES=1 but {missing}")
        pytest.skip(f"needs PostgreSQL and Redis: {missing}")
    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()


def pytest_runtest_setup(item):
    if "services" in item.keywords:
        item.fixturenames.insert(0, "services")


@pytest.fixture(autouse=True)
def _clear_caches():
    from django.core.cache import cache

    yield
    with contextlib.suppress(Exception):  # a cache that is down is some other test's subject
        cache.clear()


# --- Celery worker processes ------------------------------------------------------------------
def worker_env(**overrides) -> dict:
    """Environment for a worker process that uses the test database and test Redis."""
    db = settings.DATABASES["default"]
    user = quote(db.get("USER") or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/"
                        f"{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "NOTIFYHUB_DUE_POLL_SECONDS": "0.5",
        "NOTIFYHUB_SWEEP_SECONDS": "1",
        "NOTIFYHUB_STUCK_SECONDS": "3",
        "NOTIFYHUB_QUEUED_CHECK_SECONDS": "3",
        "NOTIFYHUB_RETRY_BASE_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class WorkerProcess:
    """A real ``celery worker`` (with an embedded beat) in its own process."""

    def __init__(self, tmp_path: Path, name: str = "w1", concurrency: int = 2, beat: bool = True,
                 queues: str = ALL_QUEUES, nice: int = 0, pool: str = "prefork", **env):
        self.log_path = tmp_path / f"worker-{name}.log"
        args = ["nice", "-n", str(nice)] if nice else []
        args += [sys.executable, "-m", "celery", "-A", "notifyhub", "worker", "-Q", queues,
                "--concurrency", str(concurrency), "--pool", pool, "--loglevel", "INFO", "-n", f"{name}@%h",
                "--without-mingle", "--without-gossip", "--without-heartbeat"]
        if beat:
            args += ["--beat", "--scheduler", "celery.beat:PersistentScheduler",
                     "--schedule", str(tmp_path / f"beat-{name}")]
        self.log = open(self.log_path, "w")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(args, cwd=ROOT, env=worker_env(**env), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log_path.read_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: no chance to ack, clean up or finish a batch."""
        import signal

        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            import signal

            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def start_worker(services, transactional_db, tmp_path):
    """Start worker processes against the test database; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(**kwargs) -> WorkerProcess:
        worker = WorkerProcess(tmp_path, **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_until(predicate, *, timeout: float = 60, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


# --- Protocol peers ---------------------------------------------------------------------------
class SmtpSink:
    """A real SMTP server (aiosmtpd) that keeps what it receives."""

    def __init__(self, delay: float = 0.0):
        from aiosmtpd.controller import Controller

        self.messages: list = []
        self.delay = delay
        self.lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                import asyncio
                import email

                if sink.delay:
                    await asyncio.sleep(sink.delay)
                with sink.lock:
                    sink.messages.append(email.message_from_bytes(envelope.content))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        self.controller.stop()


@pytest.fixture
def smtp_server():
    sink = SmtpSink()
    yield sink
    sink.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- API --------------------------------------------------------------------------------------
@pytest.fixture
def api_key_pair(db):
    return factories.api_key(scopes=["send", "read", "manage"])


@pytest.fixture
def api(api_key_pair):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_pair[1]}")
    client.api_key = api_key_pair[0]
    return client


# --- Redis ------------------------------------------------------------------------------------
def require_redis() -> None:
    """Skip without Redis (fail when CI requires the services)."""
    problem = ""
    if not settings.REDIS_URL:
        problem = "REDIS_URL is not set"
    else:
        try:
            _redis_ping()
        except Exception as exc:
            problem = f"Redis at {settings.REDIS_URL} does not answer: {exc}"
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(f"NOTIFYHUB_REQUIRE_SERVICES=1 but {problem}")
        pytest.skip(f"needs Redis: {problem}")


def _redis_ping():
    from channels_app.redis_conn import redis_client

    redis_client().ping()


@pytest.fixture
def redis_uid():
    """A unique key part on real Redis; this test's keys are deleted afterwards."""
    require_redis()
    uid = uuid.uuid4().hex
    yield uid
    from channels_app.redis_conn import redis_client

    client = redis_client()
    for key in client.scan_iter(match=f"*{uid}*"):
        client.delete(key)


@pytest.fixture(params=["redis", "memory"])
def uid(request, settings):
    """Run the test on Redis and on the in-memory fallback (REDIS_URL empty)."""
    if request.param == "memory":
        settings.REDIS_URL = ""
        yield uuid.uuid4().hex
    else:
        yield request.getfixturevalue("redis_uid")


# --- Headless Chromium (browser tests) ------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _browser_missing() -> str:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (requirements-dev.txt)"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (Debian package {package}; scripts/services.sh installs it)"
    return ""


@pytest.fixture
def browser():
    """Headless Chromium driven by Debian's chromedriver, recording the performance log (every
    network request) and the browser console. Skips with the reason when Chromium is missing, or
    fails when CI requires the services (NOTIFYHUB_REQUIRE_SERVICES=1, as ``make test`` sets)."""
    missing = _browser_missing()
    if missing:
        if REQUIRE_SERVICES:
            pytest.fail(f"NOTIFYHUB_REQUIRE_SERVICES=1 but {missing}")
        pytest.skip(f"needs headless Chromium: {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1024",
                "--disable-extensions", "--disable-component-update", "--disable-background-networking",
                "--disable-sync", "--no-first-run", "--no-default-browser-check"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
