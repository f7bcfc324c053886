"""Content-Security-Policy for every page the hub serves (admin, API docs, API answers).

Django 5.2 has no CSP of its own. The policy allows nothing from other origins: the admin and
the API docs (Swagger UI and ReDoc, served from ``drf-spectacular-sidecar``'s static files)
need only the hub itself. Scripts run only from the hub's files or, for the two inline
bootstrap scripts of the docs pages, with this request's nonce (``request.csp_nonce``, used by
the templates in ``templates/drf_spectacular/``). Styles may be inline: the admin and ReDoc
set ``style`` attributes; ReDoc parses the schema in a ``blob:`` worker.
"""
import secrets

POLICY = (
    "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


class ContentSecurityPolicyMiddleware:
    """Sets ``Content-Security-Policy`` unless a view set its own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.csp_nonce = secrets.token_urlsafe(16)
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = POLICY.format(nonce=request.csp_nonce)
        return response
