"""Forms for the HTML pages. They only parse input; the services decide what is allowed."""

from __future__ import annotations

import base64

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from generation.models import Generation
from presets.models import Preset
from presets.selectors import active_preset_by_slug
from stefna.errors import DomainError, InvalidInput

from .images import ValidatedImage, decode_base64_image, refused_in_browser, validate_image
from .photos import source_photo


class StudioForm(forms.Form):
    """The studio's upload form.

    `kept_image` carries a photo that already passed validation when the form comes back
    with an error (say, a missing prompt), so the person doesn't have to pick it again:
    browsers always empty a file input on reload.
    """

    image = forms.FileField(required=False, label=_("Photo"))
    kept_image = forms.CharField(required=False, widget=forms.HiddenInput)
    # "Try another style" and the recent-photo picker: one of the person's generations
    # whose stored photo this one starts from, instead of an upload.
    source_generation = forms.UUIDField(required=False, widget=forms.HiddenInput)
    # Set by stefna.js when it refused a file before upload (see images.refused_in_browser).
    image_refused = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)
    preset = forms.CharField(max_length=64, error_messages={"required": _("Pick a style.")})
    # Over the limit is refused with a message, never cut: the page has no maxlength, so a
    # long paste arrives whole and the person sees how much to shorten it.
    prompt = forms.CharField(
        required=False,
        max_length=settings.MAX_PROMPT_CHARS,
        widget=forms.Textarea,
        error_messages={
            "max_length": _("The prompt is %(show_value)d characters; the limit is %(limit_value)d. Please shorten it.")
        },
    )
    is_public = forms.BooleanField(required=False, label=_("Make my images public"))
    notify = forms.BooleanField(required=False, label=_("Email me when it's done"))

    def __init__(self, *args, user=None, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self) -> dict:  # type: ignore[type-arg]
        cleaned = super().clean() or {}
        no_photo = not cleaned.get("image") and not cleaned.get("kept_image") and not cleaned.get("source_generation")
        if no_photo and self._needs_photo(cleaned.get("preset") or ""):
            refused = refused_in_browser(cleaned.get("image_refused") or "")
            self.add_error("image", refused or _("Choose a photo to transform."))
        return cleaned

    @staticmethod
    def _needs_photo(slug: str) -> bool:
        # Said here beside the other fields' errors (the request service refuses it too);
        # with no style picked yet the photo is asked for, as most styles need one.
        preset = active_preset_by_slug(slug) if slug else None
        return preset is None or preset.needs_photo

    def validated_image(self) -> ValidatedImage | None:
        """The photo, decoded and normalised; raises the image's DomainError if it is unusable.

        None when no photo was given (a text-to-image style; `clean` asked for one otherwise).
        """
        upload = self.cleaned_data.get("image")
        source = self.cleaned_data.get("source_generation")
        if upload is None and not self.cleaned_data.get("kept_image") and source and self.user is not None:
            try:
                return source_photo(user=self.user, generation_id=source)
            except InvalidInput as exc:
                raise InvalidInput(exc.message, detail={"field": "image"}) from exc
        if upload is not None:
            # One byte over the limit is enough for validate_image to refuse it, without
            # reading a huge upload into memory.
            return validate_image(upload.read(settings.MAX_UPLOAD_BYTES + 1))
        if not self.cleaned_data.get("kept_image"):
            return None
        try:
            return validate_image(decode_base64_image(self.cleaned_data["kept_image"]))
        except InvalidInput as exc:
            raise InvalidInput(str(_("Choose the photo again, please.")), detail={"field": "image"}) from exc

    def revalidated_kept_image(self) -> str:
        """The kept photo for the page again, only if it still decodes and validates.

        Never echo the submitted string itself: it is user input headed for an <img src>.
        """
        upload = self.files.get("image")
        try:
            if upload is not None:
                # A fresh upload beside another field's error (say, no style picked) is
                # kept too: the person chose it, and the file input empties on reload.
                upload.seek(0)
                return kept_image_value(validate_image(upload.read(settings.MAX_UPLOAD_BYTES + 1)))
            raw = self.data.get("kept_image") or ""
            return kept_image_value(validate_image(decode_base64_image(raw))) if raw else ""
        except DomainError:
            return ""


def kept_image_value(image: ValidatedImage) -> str:
    """A data URI of an already-validated photo, for StudioForm.kept_image and its preview."""
    return f"data:{image.content_type};base64,{base64.b64encode(image.content).decode()}"


class HistoryFilterForm(forms.Form):
    kind = forms.ChoiceField(required=False, choices=[("", _("All kinds")), *Preset.Kind.choices])
    status = forms.ChoiceField(required=False, choices=[("", _("Any status")), *Generation.Status.choices])
