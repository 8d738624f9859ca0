"""Change-request API routes."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from netboxrw.api import views

router = SimpleRouter(trailing_slash=True)
router.register("change-requests", views.ChangeRequestViewSet, basename="changerequest")
urlpatterns = router.urls
