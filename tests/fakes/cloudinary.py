"""A fake of Cloudinary's upload API (plain HTTP), for tests.

Point the SDK at it with `CLOUDINARY_URL=cloudinary://KEY:SECRET@CLOUD?upload_prefix=<fake.url>`
(the `fake_cloudinary` fixture does this through settings). It answers the two calls
Stefna makes, the way Cloudinary does:

    POST /v1_1/<cloud>/image/upload   multipart form: file (remote URL, data URI or bytes), public_id,
                                      folder, overwrite, timestamp, api_key, signature …
    POST /v1_1/<cloud>/image/destroy  public_id, type, timestamp, api_key, signature
    POST /v1_1/<cloud>/image/rename   from_public_id, to_public_id, type, to_type, invalidate, …
    GET  /v1_1/<cloud>/image/download public_id, format, type, expires_at, timestamp, api_key, signature
                                      (a private download URL: refused once expires_at has passed)
    GET  /<cloud>/image/<type>/s--…--/<transformation>/v<n>/<public id>.<format>
                                      a delivery URL's path (res.cloudinary.com's, asked of the
                                      fake's address): the asset with the transformation applied

Assets keep their delivery `type` (`upload` = public, `authenticated` = signed URLs
only); destroy and rename find an asset only under its own type, as Cloudinary does.
`delivered(url)` answers whether a res.cloudinary.com delivery URL would serve an image
now (public type, or authenticated with a valid `s--…--` signature).

Each call is checked like Cloudinary checks it: the `api_key` must match, and the
`signature` must be the SHA-1 hex of the sorted `key=value` pairs (every param except
file, api_key, resource_type and signature; "&" in values encoded as %26, as the SDK's
signature version 2 does) joined by "&", with the API secret appended. A remote `file`
URL is really fetched (trusting `ca_path`, so the fake fal's HTTPS works): when it
answers 404 the upload fails with Cloudinary's 400 "Resource not found" answer.

Recorded: `fake.uploads` (each call's form params, file excluded, plus `file_url`),
`fake.destroys`, `fake.assets` (public id → answer).

Knobs (`reset()` clears them):
    fail_uploads(status=500, times=None, message=…)   answer an error (`times` then succeed; None = always)
    delay = 0.0              seconds to wait before answering (longer than the client timeout = a timeout)
    reject_signatures = False  answer 401 "Invalid Signature" whatever was sent
    on_upload = None         called with the new asset's answer before an upload is answered:
                             what happens elsewhere while a copy is under way (it runs on
                             the fake's thread)
    before_upload = None     called with the upload's form params (file excluded) once its
                             signature is accepted and before the asset exists: what happens
                             elsewhere while Cloudinary is still fetching the file (the
                             fake's thread)
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import io
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

API_KEY = "fake-cloudinary-key"
API_SECRET = "fake-cloudinary-secret"  # noqa: S105 - a test value
CLOUD_NAME = "stefna-test"
UNSIGNED_PARAMS = {"file", "api_key", "resource_type", "signature", "cloud_name"}


@dataclass
class UploadFailure:
    status: int
    remaining: int | None
    message: str


def expected_signature(params: dict[str, str], secret: str) -> str:
    pairs = sorted(f"{key}={value}".replace("&", "%26") for key, value in params.items() if value)
    return hashlib.sha1(("&".join(pairs) + secret).encode()).hexdigest()  # noqa: S324 - Cloudinary's scheme


class FakeCloudinary:
    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        api_key: str = API_KEY,
        api_secret: str = API_SECRET,
        cloud_name: str = CLOUD_NAME,
        ca_path: Path | str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.api_secret = api_secret
        self.cloud_name = cloud_name
        self.ca_path = str(ca_path) if ca_path else None
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self.reset()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def cloudinary_url(self) -> str:
        return f"cloudinary://{self.api_key}:{self.api_secret}@{self.cloud_name}?upload_prefix={self.url}"

    def reset(self) -> None:
        with self._lock:
            self._epoch = getattr(self, "_epoch", 0) + 1
            self.uploads: list[dict[str, Any]] = []
            self.destroys: list[dict[str, Any]] = []
            self.renames: list[dict[str, Any]] = []
            self.downloads: list[dict[str, str]] = []
            self.deliveries: list[str] = []
            self.asset_bytes: dict[str, bytes] = {}
            self.assets: dict[str, dict[str, Any]] = {}
            self.delay = 0.0
            self.reject_signatures = False
            self.on_upload: Callable[[dict[str, Any]], None] | None = None
            self.before_upload: Callable[[dict[str, Any]], None] | None = None
            # Called after a destroy looked for its asset and before it answers.
            self.after_destroy: Callable[[dict[str, Any]], None] | None = None
            self._failure: UploadFailure | None = None

    def fail_uploads(self, *, status: int = 500, times: int | None = None, message: str = "General Error") -> None:
        self._failure = UploadFailure(status, times, message)

    # --- server -------------------------------------------------------------------------------

    def start(self) -> FakeCloudinary:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # see tests/fakes/fal.py

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, answer = fake.handle(self.path, self.headers.get("Content-Type", ""), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Request-Id", uuid.uuid4().hex)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:  # the client timed out and left
                    pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith(f"/{fake.cloud_name}/image/"):
                    status, content, content_type = fake.deliver(self.path.split("?", 1)[0])
                else:
                    status, content = fake.download(self.path)
                    content_type = "image/png" if status == 200 else "application/json"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                try:
                    self.wfile.write(content)
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- requests -----------------------------------------------------------------------------

    def handle(self, path: str, content_type: str, body: bytes) -> tuple[int, dict[str, Any]]:
        epoch = self._epoch
        if self.delay:
            time.sleep(self.delay)
            if epoch != self._epoch:
                # A slow answer from before `reset()` (the client gave up long ago): it must
                # not show up in the next test's records.
                return 500, {"error": {"message": "stale request"}}
        fields, file_bytes = _parse_form(content_type, body)
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "v1_1" or parts[2] != "image":
            return 404, {"error": {"message": "Not found"}}
        if parts[1] != self.cloud_name:
            return 401, {"error": {"message": f"Invalid cloud_name {parts[1]}"}}
        if fields.get("api_key") != self.api_key:
            return 401, {"error": {"message": f"Unknown API key {fields.get('api_key')}"}}
        signed = {key: value for key, value in fields.items() if key not in UNSIGNED_PARAMS}
        if self.reject_signatures or fields.get("signature") != expected_signature(signed, self.api_secret):
            return 401, {"error": {"message": "Invalid Signature. String to sign - 'redacted'."}}
        if parts[3] == "upload":
            return self._upload(fields, file_bytes)
        if parts[3] == "destroy":
            return self._destroy(fields)
        if parts[3] == "rename":
            return self._rename(fields)
        return 404, {"error": {"message": "Not found"}}

    def _upload(self, fields: dict[str, str], file_bytes: bytes | None) -> tuple[int, dict[str, Any]]:
        record = {key: value for key, value in fields.items() if key != "file"}
        record["file_url"] = fields.get("file", "")
        with self._lock:
            self.uploads.append(record)
            failure = self._failure
            if failure is not None:
                if failure.remaining is not None:
                    failure.remaining -= 1
                    if failure.remaining < 0:
                        self._failure = failure = None
        if failure is not None:
            return failure.status, {"error": {"message": failure.message}}
        if self.before_upload is not None:
            self.before_upload(record)
        source = fields.get("file", "")
        if file_bytes is None:
            if not source.startswith(("http://", "https://")):
                return 400, {"error": {"message": "Missing required parameter - file"}}
            status, file_bytes = self._fetch(source)
            if file_bytes is None:
                return 400, {"error": {"message": f"Resource not found - {source}", "http_code": status}}
        width, height, image_format = _image_info(file_bytes)
        asset_type = fields.get("type") or "upload"
        public_id = fields.get("public_id") or uuid.uuid4().hex
        if fields.get("folder"):
            public_id = f"{fields['folder'].strip('/')}/{public_id}"
        with self._lock:
            if public_id in self.assets and fields.get("overwrite") not in ("1", "true"):
                return 200, {**self.assets[public_id], "existing": True}
            version = int(time.time())
            answer = {
                "asset_id": uuid.uuid4().hex,
                "public_id": public_id,
                "version": version,
                "version_id": uuid.uuid4().hex,
                "signature": hashlib.sha1(file_bytes).hexdigest(),  # noqa: S324
                "width": width,
                "height": height,
                "format": image_format,
                "resource_type": "image",
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "tags": [],
                "bytes": len(file_bytes),
                "type": asset_type,
                "etag": hashlib.md5(file_bytes).hexdigest(),  # noqa: S324
                "placeholder": False,
                "url": f"http://res.cloudinary.com/{self.cloud_name}/image/{asset_type}/v{version}/{public_id}.{image_format}",
                "secure_url": f"https://res.cloudinary.com/{self.cloud_name}/image/{asset_type}/v{version}/{public_id}.{image_format}",
                "folder": fields.get("folder", ""),
                "original_filename": public_id.rsplit("/", 1)[-1],
                "api_key": self.api_key,
            }
            self.assets[public_id] = answer
            self.asset_bytes[public_id] = file_bytes
        if self.on_upload is not None:
            self.on_upload(answer)
        return 200, answer

    def _destroy(self, fields: dict[str, str]) -> tuple[int, dict[str, Any]]:
        public_id = fields.get("public_id", "")
        with self._lock:
            self.destroys.append(dict(fields))
            asset = self.assets.get(public_id)
            found = asset is not None and asset["type"] == (fields.get("type") or "upload")
            if found:
                del self.assets[public_id]
                self.asset_bytes.pop(public_id, None)
        if self.after_destroy is not None:
            self.after_destroy(fields)
        return 200, {"result": "ok" if found else "not found"}

    def _rename(self, fields: dict[str, str]) -> tuple[int, dict[str, Any]]:
        old, new = fields.get("from_public_id", ""), fields.get("to_public_id", "")
        with self._lock:
            self.renames.append(dict(fields))
            asset = self.assets.get(old)
            if asset is None or asset["type"] != (fields.get("type") or "upload"):
                return 404, {"error": {"message": f"Resource not found - {old}"}}
            if new in self.assets and fields.get("overwrite") not in ("1", "true"):
                return 400, {"error": {"message": f"to_public_id {new} already exists"}}
            to_type = fields.get("to_type") or asset["type"]
            answer = {**self.assets.pop(old), "public_id": new, "type": to_type}
            for key in ("url", "secure_url"):
                answer[key] = answer[key].replace(f"/image/{asset['type']}/", f"/image/{to_type}/").replace(old, new)
            self.assets[new] = answer
            self.asset_bytes[new] = self.asset_bytes.pop(old)
        return 200, answer

    def download(self, raw_path: str) -> tuple[int, bytes]:
        """A private download URL (`cloudinary.utils.private_download_url`)."""
        from urllib.parse import parse_qsl, urlsplit

        parts = urlsplit(raw_path)
        if parts.path.rstrip("/") != f"/v1_1/{self.cloud_name}/image/download":
            return 404, b'{"error": {"message": "Not found"}}'
        fields = dict(parse_qsl(parts.query))
        signed = {key: value for key, value in fields.items() if key not in UNSIGNED_PARAMS}
        if fields.get("api_key") != self.api_key or fields.get("signature") != expected_signature(
            signed, self.api_secret
        ):
            return 401, b'{"error": {"message": "Invalid Signature"}}'
        if int(fields.get("expires_at") or 0) < time.time():
            return 401, b'{"error": {"message": "Expired"}}'
        with self._lock:
            self.downloads.append(fields)
            asset = self.assets.get(fields.get("public_id", ""))
            if asset is None or asset["type"] != (fields.get("type") or "upload"):
                return 404, b'{"error": {"message": "Resource not found"}}'
            return 200, self.asset_bytes[asset["public_id"]]

    def delivered(self, url: str) -> bool:
        """Would res.cloudinary.com serve `url` now? `upload` assets by their URL;
        `authenticated` ones only with the URL signature Cloudinary's SDK computes."""
        from urllib.parse import urlsplit

        return self._delivery(urlsplit(url).path) is not None

    def _delivery(self, path: str) -> tuple[dict[str, Any], list[str], str] | None:
        """(the asset, the transformation's components, the format asked for) that a
        delivery path names, when Cloudinary would serve it; None otherwise."""
        import base64

        parts = path.strip("/").split("/")
        if len(parts) < 4 or parts[0] != self.cloud_name or parts[1] != "image":
            return None
        asset_type, rest = parts[2], parts[3:]
        signature = rest.pop(0) if rest and rest[0].startswith("s--") else None
        # [transformation/…][v<version>/]<public id>.<format>; the version is not signed.
        version_at = next((i for i, part in enumerate(rest) if part[:1] == "v" and part[1:].isdigit()), None)
        transformation = rest[:version_at] if version_at is not None else []
        source = rest[version_at + 1 :] if version_at is not None else rest
        to_sign = "/".join(transformation + source)
        public_id, _, image_format = "/".join(source).rpartition(".")
        with self._lock:
            asset = self.assets.get(public_id)
        if asset is None or asset["type"] != asset_type:
            return None
        if asset_type != "upload":
            digest = hashlib.sha1((to_sign + self.api_secret).encode()).digest()  # noqa: S324 - Cloudinary's scheme
            if signature != "s--" + base64.urlsafe_b64encode(digest)[:8].decode() + "--":
                return None
        return asset, transformation, image_format

    def deliver(self, path: str) -> tuple[int, bytes, str]:
        """GET of a delivery URL (its path, on the fake's own address): the image, with
        the transformations Stefna asks for applied (c_scale / c_limit with w_ and h_,
        q_auto, and the format of the extension), or Cloudinary's 404."""
        from PIL import Image

        found = self._delivery(path)
        if found is None:
            return 404, b"", "text/html"
        asset, transformation, image_format = found
        with self._lock:
            data = self.asset_bytes[asset["public_id"]]
            self.deliveries.append(path)
        with Image.open(io.BytesIO(data)) as image:
            picture = image.convert("RGB")
        for step in transformation:
            options = dict(option.split("_", 1) for option in step.split(",") if "_" in option)
            width, height = int(options.get("w", 0)), int(options.get("h", 0))
            if options.get("c") == "scale" and width and height:
                picture = picture.resize((width, height))
            elif options.get("c") == "limit" and width and height:
                picture.thumbnail((width, height))
        buffer = io.BytesIO()
        if image_format in ("jpg", "jpeg"):
            picture.save(buffer, "JPEG", quality=80)
            return 200, buffer.getvalue(), "image/jpeg"
        picture.save(buffer, "PNG")
        return 200, buffer.getvalue(), "image/png"

    def _fetch(self, url: str) -> tuple[int, bytes | None]:
        import httpx

        verify: Any = ssl.create_default_context(cafile=self.ca_path) if self.ca_path else True
        try:
            response = httpx.get(url, timeout=10, verify=verify)
        except httpx.HTTPError:
            return 0, None
        if response.status_code != 200:
            return response.status_code, None
        return 200, response.content


def _parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], bytes | None]:
    """Fields of a multipart (or urlencoded) form, and the `file` part's bytes when it is a file."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        from urllib.parse import parse_qsl

        return dict(parse_qsl(body.decode())), None
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, str] = {}
    file_bytes = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        # A form's parts are leaves, not messages: decoded, each is bytes (or None).
        payload = cast(bytes, part.get_payload(decode=True) or b"")
        if name == "file" and part.get_filename():
            file_bytes = payload
            fields["file"] = part.get_filename() or "file"
        elif name:
            fields[str(name)] = payload.decode()
    return fields, file_bytes


def _image_info(data: bytes) -> tuple[int, int, str]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width, image.height, (image.format or "png").lower().replace("jpeg", "jpg")
    except Exception:
        return 0, 0, "png"
