from django.contrib import admin
from django.http import HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico on pages that name no icon (the admin's).
    path("favicon.ico", lambda request: HttpResponsePermanentRedirect(static("favicon.svg"))),
    path("", include("tasks_app.api.urls")),
    path("", include("tasks_app.urls")),
    path("", include("tasks_app.approvals_urls")),
]

# Server errors: JSON on the agent-facing paths, 503 while the database is unreachable.
handler500 = "tasks_app.views.errors.server_error"
