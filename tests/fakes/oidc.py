"""A fake OpenID Connect provider (Google's protocol, plain HTTP), for tests.

Serves what a relying party uses, as Google does:

    GET  /.well-known/openid-configuration   discovery: issuer and the endpoints below
    GET  /authorize    the user "consents" at once: 302 to redirect_uri with code and state
    POST /token        code (+ PKCE verifier, client credentials) → access_token and id_token
    GET  /jwks         the public half of the RSA key the ID tokens are signed with

The key pair is made when the fake is (a fresh 2048-bit RSA key per test). The ID token
carries iss, aud (the client id), sub, email, email_verified, nonce, iat and exp.

Knobs (set before the sign-in; `reset()` clears them):
    identity = {"sub": …, "email": …, "email_verified": True, "name": …}
    forge = False          sign the ID token with another key under the same kid
    audience = None        put this in `aud` instead of the client id
Recorded: `token_requests` (each POST /token's form).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

KEY_ID = "fake-oidc-key-1"


class FakeOIDCProvider:
    def __init__(self, *, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._codes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.reset()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                fake._get(self)

            def do_POST(self) -> None:
                fake._post(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self.identity: dict[str, Any] = {
            "sub": "1234567890",
            "email": "ada@example.com",
            "email_verified": True,
            "name": "Ada Lovelace",
        }
        self.forge = False
        self.audience: str | None = None
        self.token_requests: list[dict[str, str]] = []

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- the protocol ----------------------------------------------------------------
    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "userinfo_endpoint": f"{self.url}/userinfo",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile"],
        }

    def jwks(self) -> dict[str, Any]:
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": KEY_ID, "use": "sig", "alg": "RS256"}]}

    def id_token(self, *, nonce: str | None) -> str:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": self.audience or self.client_id,
            "iat": now,
            "exp": now + 3600,
            **self.identity,
        }
        if nonce:
            claims["nonce"] = nonce
        key = self.other_key if self.forge else self.key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KEY_ID})

    def _send_json(self, handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(handler.path)
        if parsed.path == "/.well-known/openid-configuration":
            return self._send_json(handler, 200, self.discovery())
        if parsed.path == "/jwks":
            return self._send_json(handler, 200, self.jwks())
        if parsed.path == "/authorize":
            query = {key: values[0] for key, values in parse_qs(parsed.query).items()}
            if query.get("client_id") != self.client_id or query.get("response_type") != "code":
                return self._send_json(handler, 400, {"error": "invalid_request"})
            code = secrets.token_urlsafe(16)
            with self._lock:
                self._codes[code] = {
                    "redirect_uri": query["redirect_uri"],
                    "nonce": query.get("nonce"),
                    "code_challenge": query.get("code_challenge"),
                }
            location = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query.get("state", "")})
            handler.send_response(302)
            handler.send_header("Location", location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return None
        return self._send_json(handler, 404, {"error": "not_found"})

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        if urlparse(handler.path).path != "/token":
            return self._send_json(handler, 404, {"error": "not_found"})
        length = int(handler.headers.get("Content-Length") or 0)
        form = {key: values[0] for key, values in parse_qs(handler.rfile.read(length).decode()).items()}
        self.token_requests.append(form)
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        authorization = handler.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(authorization[6:]).decode().partition(":")
        if client_id != self.client_id or client_secret != self.client_secret:
            return self._send_json(handler, 401, {"error": "invalid_client"})
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)
        if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
            return self._send_json(handler, 400, {"error": "invalid_grant"})
        if grant["code_challenge"]:
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if digest != grant["code_challenge"]:
                return self._send_json(handler, 400, {"error": "invalid_grant", "error_description": "PKCE"})
        return self._send_json(
            handler,
            200,
            {
                "access_token": secrets.token_urlsafe(24),
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": "openid email profile",
                "id_token": self.id_token(nonce=grant["nonce"]),
            },
        )
