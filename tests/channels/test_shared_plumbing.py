"""Shared plumbing: access tokens fetched once per host without Redis, and provider secrets
in URL query strings kept out of error messages."""
import threading
import time

import pytest
from django.core.cache import caches
from django.test import override_settings

from channels_app.errors import TransientChannelError
from channels_app.http import HttpChannelBackend
from channels_app.tokens import access_token
from tests.conftest import free_port


def test_token_fetched_once_by_many_threads_on_the_embedded_file_cache(tmp_path):
    file_cache = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                              "LOCATION": str(tmp_path / "cache")}}
    calls = []

    def fetch():
        calls.append(1)
        time.sleep(0.2)  # long enough for every other thread to arrive meanwhile
        return "token-1", 7200

    with override_settings(CACHES=file_cache, REDIS_URL="", VAR_DIR=tmp_path):
        caches._settings = None  # pick up the overridden CACHES
        results = []
        threads = [threading.Thread(target=lambda: results.append(access_token("demo:app", fetch)))
                   for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == ["token-1"] * 16
    assert len(calls) == 1


class Probe(HttpChannelBackend):
    kind = "chat"


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=["127.0.0.1"])
def test_connection_errors_do_not_leak_query_string_secrets():
    backend = Probe(options={"timeout": 1})
    url = f"http://127.0.0.1:{free_port()}/cgi-bin/send?access_token=SECRET-TOKEN-123"
    with pytest.raises(TransientChannelError) as caught:
        backend.post(url, json={})
    assert "SECRET-TOKEN-123" not in caught.value.detail
    assert "connection_error" in caught.value.detail
