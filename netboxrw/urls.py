"""Page routes of the change-review queue."""

from __future__ import annotations

from django.urls import path

from netboxrw import views

app_name = "netboxrw"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/approve/", views.review, {"decision": "approve"}, name="approve"),
    path("<int:pk>/reject/", views.review, {"decision": "reject"}, name="reject"),
    path("<int:pk>/revert/", views.review, {"decision": "revert"}, name="revert"),
]
