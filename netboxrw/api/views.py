"""REST views of the change queue: list and detail with the page's filters; approve and reject."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import User
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from netboxrw import selectors, services
from netboxrw.api.serializers import ChangeRequestSerializer, ReviewSerializer
from netboxrw.models import ChangeRequest


class ChangeRequestViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[ChangeRequest]
):
    """NetBox change requests. Approving applies the change; the requester and users without
    ``netboxrw.approve_changerequest`` get 403, a request not pending gets 409."""

    serializer_class = ChangeRequestSerializer
    queryset = ChangeRequest.objects.all()
    # Any signed-in user: reviewers (view or approve permission) see every request, anyone else
    # the requests they made; the services decide who may approve or reject.
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[ChangeRequest]:
        params = self.request.query_params
        return selectors.change_requests(
            {k: params.get(k, "") for k in ("state", "requester", "object_type")},
            visible_to=self.request.user,
        ).prefetch_related("events")

    @extend_schema(parameters=[OpenApiParameter(n, str) for n in ("state", "requester", "object_type")])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def _review(self, request: Request, pk: str | None, decide: Any) -> Response:
        body = ReviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        change = self.get_object()
        done = decide(
            change_id=change.pk, reviewer=cast(User, request.user), comment=body.validated_data["comment"]
        )
        return Response(ChangeRequestSerializer(done).data)

    @extend_schema(request=ReviewSerializer, responses=ChangeRequestSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        """Approve and apply (synchronously; the answer carries the outcome)."""
        return self._review(request, pk, services.change_request_approve)

    @extend_schema(request=ReviewSerializer, responses=ChangeRequestSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        return self._review(request, pk, services.change_request_reject)
