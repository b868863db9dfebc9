"""S3-compatible storage that never hands out a permanent address.

Objects are written with no ACL, which leaves them private to the bucket's owner (S3's
default; a bucket with ACLs disabled, AWS's default since 2023, refuses any ACL but
bucket-owner-full-control, so not even `private` is sent), and `url()` answers
our own ownership-checking address (`MEDIA_URL` + name, served by
`stefna.media.serve_media`) rather than the bucket's, so no page, API answer or export
ever carries an address that works for anyone forever. That view redirects whoever
may see the file to a presigned URL (SigV4, expiring) made by `presigned_url()`.

Public images go through the same door: the bucket stays entirely private (no object
ACLs, which many providers and AWS's "bucket owner enforced" buckets refuse anyway),
our address is the stable, cacheable one, and making an image private again moves its
object to a fresh key (generation/storage.py), which kills every URL signed for the
old key.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.encoding import filepath_to_uri
from storages.backends.s3 import S3Storage


class PrivateS3Storage(S3Storage):
    def __init__(self, **options: Any) -> None:
        # Forced, not defaults: a public ACL or an unsigned custom domain would be a
        # permanent public address for every photo.
        options.update(default_acl=None, querystring_auth=True, custom_domain=None, signature_version="s3v4")
        super().__init__(**options)

    def url(self, name: str, parameters: Any = None, expire: Any = None, http_method: Any = None) -> str:
        """Our checking address for the file, never the bucket's."""
        return settings.MEDIA_URL + filepath_to_uri(name)

    def presigned_url(self, name: str, *, seconds: int) -> str:
        """A GET URL for the object, signed with the storage's key, valid `seconds`."""
        return str(super().url(name, expire=seconds))
