"""/healthz answered before anything reads the Host header.

A container's healthcheck asks for its own address (http://127.0.0.1:8000/healthz),
which is not in ALLOWED_HOSTS in production: Django's host check (CommonMiddleware)
would answer 400 and the orchestrator restart a healthy web process. Liveness reveals
nothing and asks nothing, so it is served for any host; every other path keeps the
check.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from dashboard import views


class LivenessMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == "/healthz" and request.method in ("GET", "HEAD"):
            return views.healthz(request)
        return self.get_response(request)
