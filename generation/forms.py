"""Forms for the HTML pages. They only parse input; the services decide what is allowed."""

from __future__ import annotations

import base64

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from generation.models import Generation
from presets.models import Preset
from stefna.errors import DomainError, InvalidInput

from .images import ValidatedImage, decode_base64_image, validate_image


class StudioForm(forms.Form):
    """The studio's upload form.

    `kept_image` carries a photo that already passed validation when the form comes back
    with an error (say, a missing prompt), so the person doesn't have to pick it again:
    browsers always empty a file input on reload.
    """

    image = forms.FileField(required=False, label=_("Photo"))
    kept_image = forms.CharField(required=False, widget=forms.HiddenInput)
    preset = forms.CharField(max_length=64, error_messages={"required": _("Pick a style.")})
    prompt = forms.CharField(required=False, max_length=settings.MAX_PROMPT_CHARS, widget=forms.Textarea)
    is_public = forms.BooleanField(required=False, label=_("Make my images public"))

    def clean(self) -> dict:  # type: ignore[type-arg]
        cleaned = super().clean() or {}
        if not cleaned.get("image") and not cleaned.get("kept_image"):
            self.add_error("image", _("Choose a photo to transform."))
        return cleaned

    def validated_image(self) -> ValidatedImage:
        """The photo, decoded and normalised; raises the image's DomainError if it is unusable."""
        upload = self.cleaned_data.get("image")
        if upload is not None:
            # One byte over the limit is enough for validate_image to refuse it, without
            # reading a huge upload into memory.
            return validate_image(upload.read(settings.MAX_UPLOAD_BYTES + 1))
        try:
            return validate_image(decode_base64_image(self.cleaned_data["kept_image"]))
        except InvalidInput as exc:
            raise InvalidInput(_("Choose the photo again, please."), detail={"field": "image"}) from exc

    def revalidated_kept_image(self) -> str:
        """The kept photo for the page again, only if it still decodes and validates.

        Never echo the submitted string itself: it is user input headed for an <img src>.
        """
        raw = self.data.get("kept_image") or ""
        if not raw:
            return ""
        try:
            return kept_image_value(validate_image(decode_base64_image(raw)))
        except DomainError:
            return ""


def kept_image_value(image: ValidatedImage) -> str:
    """A data URI of an already-validated photo, for StudioForm.kept_image and its preview."""
    return f"data:{image.content_type};base64,{base64.b64encode(image.content).decode()}"


class HistoryFilterForm(forms.Form):
    kind = forms.ChoiceField(required=False, choices=[("", _("All kinds")), *Preset.Kind.choices])
    status = forms.ChoiceField(required=False, choices=[("", _("Any status")), *Generation.Status.choices])
