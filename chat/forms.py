"""Forms of the chat pages."""

from __future__ import annotations

from django import forms

from registry.models import LLMModel


class RenameForm(forms.Form):
    title = forms.CharField(max_length=200, strip=True)


class ConversationSettingsForm(forms.Form):
    """Model and servers for a conversation; no servers ticked with ``all_servers`` off means none."""

    # A choice of the registered models, so an unknown id is a form error naming the field (not a 500
    # when the foreign key is written).
    model = forms.ModelChoiceField(queryset=LLMModel.objects.all(), required=False)
    all_servers = forms.BooleanField(required=False)
    servers = forms.MultipleChoiceField(required=False, choices=())

    def __init__(self, *args: object, server_choices: list[tuple[str, str]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["servers"].choices = server_choices  # type: ignore[attr-defined]
