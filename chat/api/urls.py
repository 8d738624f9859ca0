"""Chat API routes."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from chat.api import views

router = SimpleRouter(trailing_slash=True)
router.register("conversations", views.ConversationViewSet, basename="conversation")

urlpatterns = [path("chat/", views.chat, name="chat-api"), *router.urls]
