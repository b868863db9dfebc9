"""A fake of the Stripe API calls Stefna makes (plain HTTP), for tests.

Point the SDK at it with `STRIPE_API_BASE=<fake.url>` (the `fake_stripe` fixture does,
through settings, with STRIPE_SECRET_KEY / STRIPE_WEBHOOK_SECRET set to test values).
It speaks Stripe's wire protocol: form-encoded bodies with bracketed keys
(`line_items[0][price_data][unit_amount]=499`), `Authorization: Bearer sk_…`,
`Idempotency-Key` (a repeat returns the first answer), JSON objects with `object`
names, and Stripe's error body `{"error": {"type", "message"}}`.

    POST /v1/checkout/sessions          create a session (status open, payment unpaid)
    GET  /v1/checkout/sessions/<id>     retrieve it
    POST /v1/checkout/sessions/<id>/expire  expire an open session (Stripe refuses any other)
    GET  /v1/payment_intents/<id>       retrieve (expand[]=latest_charge embeds the charge)
    GET  /v1/disputes/<id>              retrieve a dispute (as it stands now)
    POST /v1/refunds                    refund a payment intent (full, or `amount`)
    GET  /v1/refunds?payment_intent=<id>  list a payment's refunds (newest first, `limit`)

Test-side knobs: `pay(session_id)` completes a session as a paid checkout would
(creating its payment intent and charge with a receipt URL), `expire(session_id)`,
`pay_elsewhere()` (a payment no Stefna checkout made),
`refund(payment_intent_id, amount)` (as a refund made in Stripe's dashboard),
`fail_refund(refund_id, status)` (the refund fails or is canceled; its amount no longer
counts in the charge's `amount_refunded`),
`dispute(payment_intent_id)` (the cardholder's bank opens a dispute) and
`close_dispute(dispute_id, status)` (it ends `won`, `lost` or `warning_closed`),
`fail_requests(status)`. `event(type, obj)` builds an event envelope and
`sign(payload, secret)` Stripe's `Stripe-Signature` header (t=…,v1=HMAC-SHA256 of
"t.payload"), computed here exactly as Stripe documents it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

SECRET_KEY = "sk_test_fake_stefna"  # noqa: S105 - a test value
WEBHOOK_SECRET = "whsec_fake_stefna"  # noqa: S105 - a test value


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """Stripe's webhook signature header for `payload`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`a[b][0][c]=v` form pairs → nested dicts and lists, as Stripe reads them."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if isinstance(node, list):
                position = int(part)
                while len(node) <= position:
                    node.append({})
                if last:
                    node[position] = value
                else:
                    if not isinstance(node[position], (dict, list)) or node[position] == {}:
                        node[position] = [] if parts[index + 1].isdigit() else {}
                    node = node[position]
            elif last:
                if key.endswith("[]"):
                    node.setdefault(part, []).append(value)
                else:
                    node[part] = value
            else:
                node = node.setdefault(part, [] if parts[index + 1].isdigit() else {})
    return root


class FakeStripe:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, secret_key: str = SECRET_KEY) -> None:
        self.host, self.port, self.secret_key = host, port, secret_key
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self.reset()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self.sessions: dict[str, dict[str, Any]] = {}
            self.payment_intents: dict[str, dict[str, Any]] = {}
            self.charges: dict[str, dict[str, Any]] = {}
            self.refunds: list[dict[str, Any]] = []
            self.disputes: dict[str, dict[str, Any]] = {}
            self.requests: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []
            self._idempotent: dict[str, tuple[int, dict[str, Any]]] = {}
            self._failure: int | None = None
            # Called on the fake's thread with (method, path) before each answer.
            self.on_request: Callable[[str, str], None] | None = None
            # Called on the fake's thread with (method, path) once the answer is decided,
            # before it is sent: what happens meanwhile is news the answer does not carry.
            self.after_answer: Callable[[str, str], None] | None = None

    # --- test-side knobs -----------------------------------------------------------
    def fail_requests(self, status: int | None = 500) -> None:
        self._failure = status

    def pay(self, session_id: str, *, amount: int | None = None, currency: str | None = None) -> dict[str, Any]:
        """The buyer paid: the session completes with a payment intent and a charge."""
        with self._lock:
            session = self.sessions[session_id]
            amount = session["amount_total"] if amount is None else amount
            intent_id, charge_id = f"pi_{uuid.uuid4().hex[:24]}", f"ch_{uuid.uuid4().hex[:24]}"
            charge = {
                "id": charge_id,
                "object": "charge",
                "amount": amount,
                "amount_refunded": 0,
                "currency": currency or session["currency"],
                "payment_intent": intent_id,
                "refunded": False,
                "paid": True,
                "metadata": dict(session.get("metadata") or {}),
                "receipt_url": f"{self.url}/receipts/{charge_id}",
            }
            self.charges[charge_id] = charge
            self.payment_intents[intent_id] = {
                "id": intent_id,
                "object": "payment_intent",
                "amount": amount,
                "currency": charge["currency"],
                "status": "succeeded",
                "latest_charge": charge_id,
                "metadata": dict(session.get("metadata") or {}),
            }
            session.update(
                status="complete",
                payment_status="paid",
                payment_intent=intent_id,
                amount_total=amount,
                currency=charge["currency"],
            )
            return json.loads(json.dumps(session))

    def pay_elsewhere(self, *, amount: int = 499, currency: str = "usd") -> str:
        """A payment on the same Stripe account that no Stefna checkout made (no metadata);
        returns its payment intent id."""
        with self._lock:
            self.sessions["cs_elsewhere"] = {"id": "cs_elsewhere", "amount_total": amount, "currency": currency}
            self.pay("cs_elsewhere")
            return str(self.sessions.pop("cs_elsewhere")["payment_intent"])

    def expire(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            self.sessions[session_id].update(status="expired")
            return json.loads(json.dumps(self.sessions[session_id]))

    def refund(self, payment_intent_id: str, amount: int | None = None) -> dict[str, Any]:
        """Refund (part of) a payment; returns the charge as `charge.refunded` carries it."""
        with self._lock:
            intent = self.payment_intents[payment_intent_id]
            charge = self.charges[intent["latest_charge"]]
            amount = charge["amount"] - charge["amount_refunded"] if amount is None else amount
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
            refund = {
                "id": f"re_{uuid.uuid4().hex[:24]}",
                "object": "refund",
                "amount": amount,
                "charge": charge["id"],
                "payment_intent": payment_intent_id,
                "currency": charge["currency"],
                "created": int(time.time()),
                "metadata": {},
                "failure_reason": None,
                "status": "succeeded",
            }
            self.refunds.append(refund)
            return json.loads(json.dumps(charge))

    def fail_refund(self, refund_id: str, status: str = "failed") -> dict[str, Any]:
        """A refund fails (`failed`, e.g. the card was closed) or is canceled (`canceled`):
        its money goes back to the merchant's balance. Returns the refund as
        `charge.refund.updated` carries it."""
        with self._lock:
            refund = next(refund for refund in self.refunds if refund["id"] == refund_id)
            if refund["status"] not in ("failed", "canceled"):
                charge = self.charges[refund["charge"]]
                charge["amount_refunded"] -= refund["amount"]
                charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
            refund["status"] = status
            if status == "failed":
                refund["failure_reason"] = "expired_or_canceled_card"
            return json.loads(json.dumps(refund))

    def dispute(self, payment_intent_id: str, *, status: str = "needs_response") -> dict[str, Any]:
        """The cardholder's bank disputes the payment; returns the dispute as
        `charge.dispute.created` carries it (a formal dispute, or an inquiry with
        `status="warning_needs_response"`)."""
        with self._lock:
            intent = self.payment_intents[payment_intent_id]
            charge = self.charges[intent["latest_charge"]]
            charge["disputed"] = True
            dispute = {
                "id": f"du_{uuid.uuid4().hex[:24]}",
                "object": "dispute",
                "amount": charge["amount"],
                "currency": charge["currency"],
                "charge": charge["id"],
                "payment_intent": payment_intent_id,
                "reason": "fraudulent",
                "status": status,
                "metadata": {},
            }
            self.disputes[dispute["id"]] = dispute
            return json.loads(json.dumps(dispute))

    def close_dispute(self, dispute_id: str, status: str) -> dict[str, Any]:
        """The dispute ends (`won`, `lost`, `warning_closed`); returns it as
        `charge.dispute.closed` (and, when won, `charge.dispute.funds_reinstated`) carry it."""
        with self._lock:
            self.disputes[dispute_id]["status"] = status
            return json.loads(json.dumps(self.disputes[dispute_id]))

    def charge_of(self, payment_intent_id: str) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self.charges[self.payment_intents[payment_intent_id]["latest_charge"]]))

    @staticmethod
    def event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None) -> bytes:
        """A webhook delivery body, as Stripe sends it."""
        return json.dumps(
            {
                "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
                "object": "event",
                "api_version": "2025-01-27.acacia",
                "created": int(time.time()),
                "type": event_type,
                "livemode": False,
                "pending_webhooks": 1,
                "data": {"object": obj},
            }
        ).encode()

    # --- the server -----------------------------------------------------------------
    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                fake._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self, "POST")

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        params = _unflatten(parse_qsl(body if method == "POST" else parts.query, keep_blank_values=True))
        headers = {key.lower(): value for key, value in handler.headers.items()}
        with self._lock:
            self.requests.append((method, parts.path, params, headers))
        if self.on_request is not None:
            self.on_request(method, parts.path)
        status, answer = self._answer(method, parts.path, params, headers)
        data = json.dumps(answer).encode()
        if self.after_answer is not None:
            self.after_answer(method, parts.path)
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Request-Id", f"req_{uuid.uuid4().hex[:14]}")
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        if headers.get("authorization") != f"Bearer {self.secret_key}":
            return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
        if self._failure:
            return self._failure, {"error": {"type": "api_error", "message": "fake Stripe is failing"}}
        key = headers.get("idempotency-key")
        with self._lock:
            if method == "POST" and key and key in self._idempotent:
                return self._idempotent[key]
            answer = self._route(method, path, params)
            if method == "POST" and key:
                self._idempotent[key] = answer
            return answer

    def _route(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        missing = (404, {"error": {"type": "invalid_request_error", "message": f"No such object: {path}"}})
        if method == "POST" and path == "/v1/checkout/sessions":
            return 200, self._create_session(params)
        if method == "GET" and (match := re.fullmatch(r"/v1/checkout/sessions/([\w]+)", path)):
            session = self.sessions.get(match.group(1))
            return (200, json.loads(json.dumps(session))) if session else missing
        if method == "POST" and (match := re.fullmatch(r"/v1/checkout/sessions/([\w]+)/expire", path)):
            session = self.sessions.get(match.group(1))
            if session is None:
                return missing
            if session["status"] != "open":
                # Stripe's answer: only an open session can be expired.
                message = (
                    f'Only Checkout Sessions with a status in ["open"] can be expired; this one is {session["status"]}.'
                )
                return 400, {"error": {"type": "invalid_request_error", "message": message}}
            session["status"] = "expired"
            return 200, json.loads(json.dumps(session))
        if method == "GET" and (match := re.fullmatch(r"/v1/payment_intents/([\w]+)", path)):
            intent = self.payment_intents.get(match.group(1))
            if intent is None:
                return missing
            answer = json.loads(json.dumps(intent))
            if "latest_charge" in (params.get("expand") or []):
                answer["latest_charge"] = json.loads(json.dumps(self.charges[intent["latest_charge"]]))
            return 200, answer
        if method == "GET" and (match := re.fullmatch(r"/v1/disputes/([\w]+)", path)):
            dispute = self.disputes.get(match.group(1))
            return (200, json.loads(json.dumps(dispute))) if dispute else missing
        if method == "GET" and path == "/v1/refunds":
            limit = int(params.get("limit") or 10)
            found = [
                refund
                for refund in reversed(self.refunds)
                if not params.get("payment_intent") or refund["payment_intent"] == params["payment_intent"]
            ]
            if params.get("starting_after"):
                ids = [refund["id"] for refund in found]
                found = found[ids.index(params["starting_after"]) + 1 :]
            return 200, {
                "object": "list",
                "url": "/v1/refunds",
                "has_more": len(found) > limit,
                "data": json.loads(json.dumps(found[:limit])),
            }
        if method == "POST" and path == "/v1/refunds":
            intent_id = params.get("payment_intent", "")
            if intent_id not in self.payment_intents:
                return missing
            amount = int(params["amount"]) if params.get("amount") else None
            self.refund(intent_id, amount)
            return 200, self.refunds[-1]
        return missing

    def _create_session(self, params: dict[str, Any]) -> dict[str, Any]:
        item = params["line_items"][0]
        price = item["price_data"]
        session_id = f"cs_test_{uuid.uuid4().hex}"
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": params.get("mode"),
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": int(price["unit_amount"]) * int(item.get("quantity", 1)),
            "currency": price["currency"],
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata") or {},
            "customer_email": params.get("customer_email"),
            "payment_intent": None,
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "url": f"{self.url}/pay/{session_id}",
        }
        self.sessions[session_id] = session
        return json.loads(json.dumps(session))
