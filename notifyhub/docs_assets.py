"""ReDoc's standalone bundle (from ``drf-spectacular-sidecar``), served without the one address
outside the hub that it hard-codes.

ReDoc 2.x draws the "API docs by Redocly" logo at the foot of its side menu from
``https://cdn.redoc.ly/redoc/logo-mini.svg`` and has no option to leave it out. The
Content-Security-Policy blocks that image, but the browser still tries it and reports a
violation, and the docs are meant to load nothing from other hosts. This view serves the
sidecar's file with that address replaced by an inline transparent image; the ReDoc page
(``templates/drf_spectacular/redoc.html``) loads the bundle from here. ``tests/test_docs_browser.py``
renders the page in headless Chromium and fails on any request outside the hub, so a ReDoc
upgrade that adds another such address is caught.
"""
import functools
import hashlib

from django.contrib.staticfiles import finders
from django.http import Http404, HttpResponse, HttpResponseNotModified
from django.views.decorators.http import require_safe

REDOC_BUNDLE = "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"
TRANSPARENT_GIF = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
REPLACEMENTS = {"https://cdn.redoc.ly/redoc/logo-mini.svg": TRANSPARENT_GIF}


@functools.cache
def _redoc_bundle() -> tuple[bytes, str]:
    path = finders.find(REDOC_BUNDLE)
    if not path:
        raise Http404("drf-spectacular-sidecar's ReDoc bundle is not installed")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    for old, new in REPLACEMENTS.items():
        text = text.replace(old, new)
    body = text.encode("utf-8")
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@require_safe
def redoc_bundle(request):
    body, etag = _redoc_bundle()
    if etag in request.headers.get("If-None-Match", ""):
        response = HttpResponseNotModified()
    else:
        response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["ETag"] = etag
    response["Cache-Control"] = "public, max-age=3600"
    return response
