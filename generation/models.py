"""Generation: the job record, its provider attempts and the images it produced.

A `Generation` row *is* the job. States and transitions:

    queued ──submit──▶ running ──result persisted──▶ succeeded   (credits captured)
      │                  │  ▲
      │                  │  └── attempt failed, next model in the chain submitted
      │                  └──── every model failed / timed out ──▶ failed (refunded)
      └──────── cancel (queued or running) ──────────────────────▶ canceled (refunded)

`succeeded`, `failed` and `canceled` are final. Workers and webhooks move a row only
with a conditional UPDATE on its current status, so a task or webhook delivered twice
changes nothing the second time.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import NotSupportedError, models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Generation(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        CANCELED = "canceled", _("Canceled")

    FINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)
    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
    # The error code of a cancel by staff (the owner's own is "canceled"): the owner did not
    # stop it, so one who asked to be emailed when it ends is (notify.py).
    STAFF_CANCEL_CODE = "canceled_by_staff"
    # What only a generation's own status, history and admin pages show: its prompts, logs,
    # model chain and payload, most of them JSON decoded on every load. Reads that show or
    # guard one of its images (the feed, serving a file) defer them.
    DETAIL_FIELDS = (
        "prompt",
        "prompt_template",
        "prompt_sent",
        "model_chain",
        "parameters",
        "loras",
        "logs",
        "error_message",
        "request_payload",
    )

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generations")
    preset = models.ForeignKey("presets.Preset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Copied from the preset when the generation starts, so later preset edits never
    # rewrite what this job was.
    preset_slug = models.SlugField(max_length=64)
    preset_name = models.CharField(max_length=80, blank=True)
    kind = models.CharField(max_length=32)
    prompt = models.TextField(blank=True, help_text="The user's prompt as typed (trimmed).")
    prompt_template = models.TextField(blank=True)
    prompt_sent = models.TextField(blank=True, help_text="The final prompt sent to the model.")
    model_chain = models.JSONField(default=list)
    parameters = models.JSONField(default=dict, blank=True)
    loras = models.JSONField(default=list, blank=True)
    num_images = models.PositiveSmallIntegerField(default=1)
    cost = models.PositiveSmallIntegerField()

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    queue_position = models.IntegerField(null=True, blank=True)
    current_model = models.CharField(max_length=120, blank=True)
    logs = models.JSONField(default=list, blank=True, help_text="[{message, level, timestamp}]")
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    # The last payload sent to fal (image data shortened, no key), for staff debugging.
    request_payload = models.JSONField(null=True, blank=True)

    source_image = models.FileField(max_length=300, blank=True)
    source_width = models.PositiveIntegerField(null=True, blank=True)
    source_height = models.PositiveIntegerField(null=True, blank=True)
    is_public = models.BooleanField(default=False, help_text="Default visibility of this generation's images.")
    # "Email me when it's done": set by the owner; notified_at makes the email go once.
    # db_default too: while `migrate` adds a column, the previous version still serves and inserts
    # rows without it (docs/deploy.md, Upgrades; tests/deploy/test_migrations_upgrade.py).
    notify = models.BooleanField(default=False, db_default=False)
    notified_at = models.DateTimeField(null=True, blank=True)

    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    # The one-time key of the staff retry form that last restarted it (`generation_retry`):
    # that form sent again, after the retry it asked for already ended, restarts nothing.
    retry_key = models.UUIDField(null=True, blank=True, editable=False)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    # The X-Request-ID of the web request that asked for it (stefna/middleware.py): the
    # worker's log lines and Sentry events about this job carry it too, so one user action
    # can be followed from the web's log line to the worker's. Blank when no request made it.
    origin_request_id = models.CharField(max_length=128, blank=True, default="", db_default="")

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # When the poller should next look at this job; null when it needs no polling.
    next_check_at = models.DateTimeField(null=True, blank=True)
    # Hidden from the owner's history (the row stays: it is the job and money record).
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Moves up by one whenever anything a viewer sees changes (this row's visible columns,
    # its attempts, its images). Only database triggers write it (migration 0007,
    # generation/live.py explains why); a stale save() of an older value is undone by them.
    # ETags and the live status stream are built from it.
    version = models.PositiveBigIntegerField(default=1, db_default=1, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-created_at", "-id"], name="gen_history"),
            models.Index(
                fields=["next_check_at"],
                name="gen_inflight_due",
                condition=Q(status__in=["queued", "running"]),
            ),
            models.Index(fields=["status", "-created_at"], name="gen_status_recent"),
            # Newest first over everything: the admin list and the dashboard's time windows.
            models.Index(fields=["-created_at", "-id"], name="gen_recent"),
            # /media/sources/<name> finds its generation by this on every request.
            models.Index(fields=["source_image"], name="gen_source_image"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="gen_unique_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed", "canceled"]),
                name="gen_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.preset_slug} {self.status} ({self.id})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES


class Attempt(models.Model):
    """One submission of a generation to one model endpoint."""

    class Status(models.TextChoices):
        SUBMITTING = "submitting", _("Submitting")
        QUEUED = "queued", _("In fal's queue")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        CANCELED = "canceled", _("Canceled")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="attempts")
    position = models.PositiveSmallIntegerField(help_text="Index of the model in the generation's chain.")
    model = models.CharField(max_length=120)
    fal_job_id = models.CharField(max_length=120, blank=True, help_text="fal's request id.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUBMITTING)
    error = models.TextField(blank=True)
    payload = models.JSONField(null=True, blank=True, help_text="What was sent (image data shortened, no key).")
    blocked_images = models.PositiveSmallIntegerField(
        default=0, db_default=0, help_text="Images fal's safety checker withheld from this attempt's result."
    )
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at"]
        indexes = [
            models.Index(fields=["fal_job_id"], name="attempt_fal_job"),
            models.Index(fields=["started_at"], name="attempt_started"),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.status}"


def new_share_id() -> str:
    """128 random bits, URL-safe (22 characters): the image's public address, /i/<share_id>."""
    return secrets.token_urlsafe(16)


class Media(models.Model):
    """One output image. `url` is durable once `persisted` is true; until then it is fal's."""

    # The generation's columns a read of its images leaves unread (Generation.DETAIL_FIELDS).
    GENERATION_DETAILS = tuple(f"generation__{name}" for name in Generation.DETAIL_FIELDS)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="media")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="media")
    index = models.PositiveSmallIntegerField(default=0)
    fal_job_id = models.CharField(max_length=120, blank=True)
    model = models.CharField(max_length=120, blank=True)
    url = models.URLField(max_length=1000)
    original_url = models.TextField(blank=True, help_text="fal's own address (expires after about an hour).")
    storage_key = models.CharField(max_length=300, blank=True, help_text="Cloudinary public id or storage path.")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    content_type = models.CharField(max_length=50, blank=True)
    persisted = models.BooleanField(default=False)
    persist_attempts = models.PositiveSmallIntegerField(default=0)
    persist_error = models.TextField(blank=True)
    # When the worker next tries to copy an image not persisted yet; null when nothing
    # is to be tried (copied, or its source is gone).
    persist_next_at = models.DateTimeField(null=True, blank=True)
    is_public = models.BooleanField(default=False)
    # The share page's id: distinct from the API id (which owners' clients, logs and
    # owner-only routes carry), so only a link the owner shares leads to the page.
    share_id = models.CharField(max_length=32, unique=True, default=new_share_id, editable=False)
    hidden = models.BooleanField(default=False, help_text="Taken down by staff: never shown in the feed.")
    hidden_reason = models.CharField(max_length=200, blank=True)
    # A move of the stored file to a fresh name is owed (made private, taken down): until
    # it is done, an address that leaked while the image was public (Cloudinary's signed
    # URL never expires) may still serve it. `move_to` is the name it goes to, chosen
    # once so that a retry after an answer that got lost lands on the same name;
    # `move_next_at` is when the worker tries again (null: nothing owed).
    # See generation/services/revoke.py.
    move_to = models.CharField(max_length=300, blank=True, default="", db_default="")
    move_next_at = models.DateTimeField(null=True, blank=True)
    move_attempts = models.PositiveSmallIntegerField(default=0, db_default=0)
    move_error = models.TextField(blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "media"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["-created_at", "-id"],
                name="media_feed",
                condition=Q(is_public=True, hidden=False),
            ),
            models.Index(fields=["-created_at", "-id"], name="media_recent"),
            models.Index(fields=["persisted"], name="media_unpersisted", condition=Q(persisted=False)),
            models.Index(fields=["persist_next_at"], name="media_persist_due", condition=Q(persisted=False)),
            # /media/generated/<name> finds its image by this on every request.
            models.Index(fields=["storage_key"], name="media_storage_key"),
            models.Index(fields=["move_next_at"], name="media_move_due", condition=Q(move_next_at__isnull=False)),
        ]
        constraints = [models.UniqueConstraint(fields=["generation", "index"], name="media_unique_index")]

    def __str__(self) -> str:
        return f"image {self.index} of {self.generation_id}"

    @property
    def move_owed(self) -> bool:
        """Its stored file still waits to leave the name it had while it was public."""
        return self.move_next_at is not None


class StoredRemoval(models.Model):
    """A stored object no row points to any more, still to be removed from storage.

    Written before the removal is tried (in the transaction that deletes the row, where
    there is one), and deleted once storage confirms it; a failure keeps it, and the
    worker tries again with a doubling delay (generation/services/revoke.py). Until then
    an address that leaked while the image was public may still serve it.
    """

    class Where(models.TextChoices):
        CLOUDINARY = "cloudinary", "Cloudinary"
        STORAGE = "storage", "Django storage"

    class Reason(models.TextChoices):
        IMAGE_DELETED = "image_deleted", "image deleted"
        ACCOUNT_DELETED = "account_deleted", "account deleted"
        SURPLUS_COPY = "surplus_copy", "copy saved after its image was deleted"
        GENERATION_STOPPED = "generation_stopped", "copy of a canceled or failed generation's result"
        RENAMED = "renamed", "left by a rename to an unguessable name"
        PREVIEW_REVOKED = "preview_revoked", "share preview of an image no longer public"

    where = models.CharField(max_length=20, choices=Where.choices)
    key = models.CharField(max_length=300, help_text="Cloudinary public id or storage path.")
    reason = models.CharField(max_length=30, choices=Reason.choices)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_at = models.DateTimeField(help_text="When the worker tries (again).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["next_at"], name="stored_removal_due")]
        # One owed removal per object, however many paths found it orphaned.
        constraints = [models.UniqueConstraint(fields=["where", "key"], name="stored_removal_unique")]

    def __str__(self) -> str:
        return f"{self.where}:{self.key}"


class WorkerHeartbeat(models.Model):
    """Written by each `db_worker` every few seconds; /healthz reads the newest."""

    worker_id = models.CharField(max_length=200, primary_key=True)
    hostname = models.CharField(max_length=200, blank=True)
    pid = models.IntegerField(null=True)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.worker_id


class AppendLogLines(models.Expression):
    """`logs` with `lines` appended, keeping the newest `keep` lines, computed by the database.

    The pipeline appends to a generation's log several times per job, from the worker,
    the webhook and user actions. Appending in the UPDATE itself needs no read and no
    row lock first (one statement instead of four with the transaction), and still
    loses no line to a concurrent writer: each UPDATE applies to the row as the
    previous one left it. Only SQLite and PostgreSQL are supported, like the project.
    """

    output_field = models.JSONField()

    def __init__(self, column: str, lines: list[dict[str, Any]], *, keep: int) -> None:
        super().__init__()
        self.column = models.F(column)
        self.lines = list(lines)[-keep:]
        self.keep = keep

    def get_source_expressions(self) -> list[Any]:
        return [self.column]

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        (self.column,) = exprs

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.column)
        # jsonpath's lax mode clamps "last - n" to the first element on shorter arrays.
        sql = f"jsonb_path_query_array(COALESCE({column}, '[]'::jsonb) || %s::jsonb, %s::jsonpath)"
        return sql, [*params, json.dumps(self.lines), f"$[last - {self.keep - 1} to last]"]

    def as_sqlite(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.column)
        # json_each loses the JSON-ness of its values on the way through a subquery,
        # so each element is turned back into JSON text and re-read with json().
        as_json = (
            "CASE type WHEN 'text' THEN json_quote(value) WHEN 'true' THEN 'true' "
            "WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE value END"
        )
        old = f"COALESCE({column}, '[]')"
        # Only the compiled column name is interpolated; every value is a parameter.
        sql = (
            f"(SELECT json_group_array(json(element)) FROM ("  # noqa: S608
            f"SELECT {as_json} AS element, 0 AS part, key FROM json_each({old}) "
            f"WHERE key >= json_array_length({old}) - %s "
            f"UNION ALL SELECT {as_json}, 1, key FROM json_each(%s) ORDER BY 2, 3))"
        )
        # The column appears twice (json_each, json_array_length), then the two values.
        return sql, [*params, *params, self.keep - len(self.lines), json.dumps(self.lines)]

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        raise NotSupportedError(f"AppendLogLines supports SQLite and PostgreSQL, not {connection.vendor}")
