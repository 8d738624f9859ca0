"""Project-level pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from drf_spectacular.views import SpectacularSwaggerSplitView


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The landing page is the chat."""
    return redirect("chat:index")


class ApiDocsView(SpectacularSwaggerSplitView):
    """Swagger UI served from the drf-spectacular-sidecar package, never a CDN.

    The split view answers the page and, at ``?script=``, its init script as a file of its own, so
    the page needs no inline script under the Content-Security-Policy; the template also moves the
    inline ``<style>`` into a static file.
    """

    template_name = "api/swagger_ui.html"


# A person, not an API client, reads the docs: an anonymous visitor goes to the login page and comes
# back, instead of a blank page with a 403 (the schema at /api/schema/ keeps its 401/403 JSON).
api_docs = login_required(ApiDocsView.as_view(url_name="api-schema"))
