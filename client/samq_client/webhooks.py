"""Standard Webhooks signature checking (https://www.standardwebhooks.com), with the standard library only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from samq_client.errors import WebhookVerificationError

TOLERANCE_S = 5 * 60


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one message (what the sender puts in `webhook-signature`)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_webhook(secret: str, headers: Mapping[str, str], body: bytes | str,
                   tolerance_s: int = TOLERANCE_S, now: float | None = None) -> dict[str, Any]:
    """Check a webhook's `webhook-id`, `webhook-timestamp` and `webhook-signature`; return the parsed body."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(stamp)
    except ValueError as exc:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from exc
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is too far from now")
    raw = body.encode() if isinstance(body, str) else bytes(body)
    try:
        expected = sign(secret, msg_id, timestamp, raw)
    except ValueError as exc:
        raise WebhookVerificationError("the secret is not whsec_<base64>") from exc
    # Several space-separated signatures are allowed (secret rotation); any v1 match will do.
    if not any(hmac.compare_digest(expected, sig) for sig in signatures.split() if sig.startswith("v1,")):
        raise WebhookVerificationError("no signature matches")
    return json.loads(raw)
