"""A fake S3-compatible object store (plain HTTP, path-style addresses), for tests.

Point botocore at it with `endpoint_url=fake.url` and path-style addressing (the
`fake_s3` fixture switches Django's default storage to it). It answers what
django-storages asks of a bucket, the way S3 does:

    PUT    /<bucket>/<key>   PutObject (records `x-amz-acl`; a body sent `aws-chunked` is decoded)
    GET    /<bucket>/<key>   GetObject
    HEAD   /<bucket>/<key>   HeadObject
    DELETE /<bucket>/<key>   DeleteObject (204 whether or not it existed)
    GET    /<bucket>?list-type=2&prefix=…   ListObjectsV2 (one page)

Like a private bucket, it serves an object to three kinds of request only: one signed
by the access key (an `Authorization` header naming it), a presigned URL (SigV4 query
authentication, whose signature is checked and which is refused once `X-Amz-Date` +
`X-Amz-Expires` has passed), or an anonymous one for an object stored `public-read`.
Anything else is 403 AccessDenied, and a missing key 404 NoSuchKey.

`fake.objects` maps key → `StoredObject`; `fake.requests` records (method, path, query).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.sax.saxutils import escape

ACCESS_KEY = "fake-s3-access-key"
SECRET_KEY = "fake-s3-secret-key"  # noqa: S105 - a test value
BUCKET = "stefna-test"
REGION = "us-east-1"


@dataclass
class StoredObject:
    body: bytes
    content_type: str
    acl: str = "private"
    acl_header: str | None = None  # the `x-amz-acl` the upload sent, if any
    modified: float = field(default_factory=lambda: dt.datetime.now(dt.UTC).timestamp())


def _signing_key(secret: str, date: str, region: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def presigned_signature(*, method: str, path: str, query: list[tuple[str, str]], host: str, secret: str) -> str:
    """SigV4 query authentication, as S3 computes it for a presigned URL."""
    params = dict(query)
    canonical_query = "&".join(
        f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}"
        for name, value in sorted(query)
        if name != "X-Amz-Signature"
    )
    signed_headers = params["X-Amz-SignedHeaders"].split(";")
    if signed_headers != ["host"]:
        raise ValueError("only host is signed in the URLs botocore presigns for GET")
    canonical = "\n".join(
        [method, quote(path, safe="/-_.~"), canonical_query, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    _key_id, date, region, _service, _terminal = params["X-Amz-Credential"].split("/")
    scope = f"{date}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    return hmac.new(_signing_key(secret, date, region), to_sign.encode(), hashlib.sha256).hexdigest()


def _decode_aws_chunked(body: bytes) -> bytes:
    """`size;chunk-signature=…\\r\\n data \\r\\n` … `0\\r\\n` + trailers, as botocore may stream a body."""
    out = bytearray()
    position = 0
    while True:
        line_end = body.index(b"\r\n", position)
        size = int(body[position:line_end].split(b";")[0], 16)
        position = line_end + 2
        if size == 0:
            return bytes(out)
        out += body[position : position + size]
        position += size + 2


class FakeS3:
    def __init__(self, *, bucket: str = BUCKET, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> None:
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key
        self.objects: dict[str, StoredObject] = {}
        self.requests: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.objects.clear()
            self.requests.clear()

    # --- authorisation ----------------------------------------------------------------

    def _authorised(self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> bool:
        authorization = headers.get("authorization", "")
        if authorization:
            # Header-signed calls come from botocore with our key; that the key is
            # ours is what matters here (the presigned URLs below are fully checked).
            return f"Credential={self.access_key}/" in authorization
        params = dict(query)
        if "X-Amz-Signature" not in params:
            return False
        try:
            signed_at = dt.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
            expires = int(params["X-Amz-Expires"])
            if not params["X-Amz-Credential"].startswith(f"{self.access_key}/"):
                return False
            expected = presigned_signature(
                method=method, path=path, query=query, host=headers.get("host", ""), secret=self.secret_key
            )
        except (KeyError, ValueError):
            return False
        if dt.datetime.now(dt.UTC) > signed_at + dt.timedelta(seconds=expires):
            return False
        return hmac.compare_digest(expected, params["X-Amz-Signature"])

    # --- HTTP -------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, code: str) -> None:
                body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code></Error>".encode()
                self._send(status, body, {"Content-Type": "application/xml"})

            def _route(self) -> tuple[str, str, list[tuple[str, str]]] | None:
                parts = urlsplit(self.path)
                raw_path = parts.path
                bucket, _, key = unquote(raw_path).lstrip("/").partition("/")
                query = parse_qsl(parts.query, keep_blank_values=True)
                with fake._lock:
                    fake.requests.append((self.command, unquote(raw_path), parts.query))
                if bucket != fake.bucket:
                    self._error(404, "NoSuchBucket")
                    return None
                headers = {name.lower(): value for name, value in self.headers.items()}
                if not fake._authorised(self.command, unquote(raw_path), query, headers):
                    stored = fake.objects.get(key)
                    if not (self.command in ("GET", "HEAD") and stored and stored.acl == "public-read"):
                        self._error(403, "AccessDenied")
                        return None
                return bucket, key, query

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b""):
                                pass
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                    data = bytes(body)
                else:
                    data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "aws-chunked" in self.headers.get("Content-Encoding", ""):
                    data = _decode_aws_chunked(data)
                return data

            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                body = self._read_body()
                route = self._route()
                if route is None:
                    return
                _bucket, key, _query = route
                stored = StoredObject(
                    body=body,
                    content_type=self.headers.get("Content-Type", "binary/octet-stream"),
                    acl=self.headers.get("x-amz-acl", "private"),
                    acl_header=self.headers.get("x-amz-acl"),
                )
                with fake._lock:
                    fake.objects[key] = stored
                etag = hashlib.md5(body).hexdigest()  # noqa: S324 - S3's ETag
                self._send(200, headers={"ETag": f'"{etag}"'})

            def do_GET(self) -> None:  # noqa: N802
                route = self._route()
                if route is None:
                    return
                _bucket, key, query = route
                if not key:
                    self._list(dict(query).get("prefix", ""))
                    return
                self._object(key)

            def do_HEAD(self) -> None:  # noqa: N802
                route = self._route()
                if route is not None:
                    self._object(route[1])

            def do_DELETE(self) -> None:  # noqa: N802
                route = self._route()
                if route is None:
                    return
                with fake._lock:
                    fake.objects.pop(route[1], None)
                self._send(204)

            def _object(self, key: str) -> None:
                stored = fake.objects.get(key)
                if stored is None:
                    self._error(404, "NoSuchKey")
                    return
                etag = hashlib.md5(stored.body).hexdigest()  # noqa: S324 - S3's ETag
                headers = {
                    "Content-Type": stored.content_type,
                    "Content-Length": str(len(stored.body)),
                    "ETag": f'"{etag}"',
                    "Last-Modified": formatdate(stored.modified, usegmt=True),
                }
                self._send(200, stored.body, headers)

            def _list(self, prefix: str) -> None:
                keys = sorted(key for key in fake.objects if key.startswith(prefix))
                contents = "".join(
                    f"<Contents><Key>{escape(key)}</Key><Size>{len(fake.objects[key].body)}</Size></Contents>"
                    for key in keys
                )
                body = (
                    "<?xml version='1.0' encoding='UTF-8'?>"
                    '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    f"<Name>{fake.bucket}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(keys)}</KeyCount>"
                    f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
                ).encode()
                self._send(200, body, {"Content-Type": "application/xml"})

        return Handler
