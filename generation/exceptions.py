from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from stefna.errors import DomainError


class UnsupportedImage(DomainError):
    code = "unsupported_image"
    status = 415
    default_message = "That file isn't an image we can read. Upload a JPEG, PNG, WebP, HEIC or AVIF photo."


class ImageTooLarge(DomainError):
    code = "image_too_large"
    status = 413
    default_message = _("That image is too large.")


class ImageTooManyPixels(ImageTooLarge):
    # CONTRACT: too many pixels is `image_too_large` (413), like too many bytes.
    default_message = _("That image has too many pixels.")


class IdempotencyConflict(DomainError):
    code = "idempotency_conflict"
    status = 409
    default_message = _("This Idempotency-Key was already used for a different request.")


class InvalidTransition(DomainError):
    code = "invalid_state"
    status = 409
    default_message = _("That can't be done to this generation in its current state.")


class AlreadyRetried(InvalidTransition):
    """A staff retry form sent again (a double click, a browser resubmit): the retry it
    asked for was made, and maybe has ended since; nothing more is done or charged."""

    default_message = _("already retried (this form was sent before); nothing was done.")


class ProviderError(Exception):
    """A model provider failed. `permanent` errors are not retried on the same model."""

    def __init__(self, message: str, *, permanent: bool = False, code: str = "provider_error") -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.code = code
