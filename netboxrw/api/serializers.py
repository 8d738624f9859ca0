"""Serializers for the change-request API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from netboxrw.models import ChangeEvent, ChangeRequest
from netboxrw.plans import Plan


class ChangeEventSerializer(serializers.ModelSerializer[ChangeEvent]):
    class Meta:
        model = ChangeEvent
        fields = ["from_state", "to_state", "actor_label", "comment", "request_id", "at"]


class ChangeRequestSerializer(serializers.ModelSerializer[ChangeRequest]):
    # None for a request from a deleted user, and until someone reviews it.
    requested_by = serializers.CharField(
        source="requested_by.username", default=None, read_only=True, allow_null=True
    )
    reviewer = serializers.CharField(
        source="reviewer.username", default=None, read_only=True, allow_null=True
    )
    diff = serializers.SerializerMethodField()
    events = ChangeEventSerializer(many=True, read_only=True)

    class Meta:
        model = ChangeRequest
        fields = [
            "id", "tool", "summary", "state", "object_types", "arguments", "diff", "requested_by", "requested_via",
            "conversation_id", "reviewer", "review_comment", "result", "error", "reverts", "created", "updated",
            "reviewed_at", "applied_at", "events",
        ]  # fmt: skip
        read_only_fields = fields

    def get_diff(self, change: ChangeRequest) -> list[dict[str, Any]]:
        return Plan.from_json(change.plan).diff()


class ReviewSerializer(serializers.Serializer[dict[str, Any]]):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")
