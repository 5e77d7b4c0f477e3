"""Webhook: the delivery as JSON, signed with HMAC-SHA256, with a Slack-compatible ``text``.

Body::

    {"text": "ALERT [warning] Freezer in Garage is -4.2 °C, above -10 °C for 15 min",
     "delivery": "17", "home_id": 3, "alerts": [{...one object per alert update...}]}

Headers: ``X-Thermowatch-Delivery`` (the same on every retry, for de-duplication) and
``X-Thermowatch-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>``,
so a receiver can check both origin and freshness. Slack incoming webhooks read ``text`` and
ignore the rest.

The URL is a secret too (Slack-style hooks carry their token in the path): it is stored
encrypted and shown only to those who may edit the target. The connection goes to the address
checked just before it (notify/destinations.py), with the URL's host name in ``Host`` and as the
TLS server name, so certificates are verified against the name, not the address.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
from pydantic import BaseModel, Field

from collector.notify.base import Delivery, Notifier, NotifyError, pinned_address


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


_DEFAULT_PORT = {"http": 80, "https": 443}


class WebhookConfig(BaseModel):
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=60)


class WebhookNotifier(Notifier):
    kind = "webhook"
    Config = WebhookConfig
    secret_fields = ("url", "secret")
    destination_fields = ("url",)

    def send(self, delivery: Delivery) -> None:
        cfg = WebhookConfig.model_validate(delivery.config)
        body = json.dumps(
            {
                "text": delivery.text,
                "delivery": delivery.delivery_id,
                "home_id": delivery.home_id,
                "alerts": delivery.items,
            },
            ensure_ascii=False,
        ).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "thermowatch-collector",
            "X-Thermowatch-Delivery": delivery.delivery_id,
        }
        if cfg.secret:
            headers["X-Thermowatch-Signature"] = signature(cfg.secret, int(time.time()), body)
        try:
            url = httpx.URL(cfg.url)
        except httpx.InvalidURL:
            # Not the URL itself in the message: it may hold the receiver's token.
            raise NotifyError("webhook: the URL is not valid", retryable=False) from None
        try:
            address = pinned_address(url.host, url.port or _DEFAULT_PORT[url.scheme], delivery)
            headers["Host"] = url.netloc.decode("ascii")
            extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
            # Redirects are not followed (httpx's default): a 3xx is a failed delivery, so a
            # receiver cannot send the request on to an address that was never checked.
            with httpx.Client(timeout=cfg.timeout_s, follow_redirects=False) as client:
                response = client.post(
                    url.copy_with(host=address),
                    content=body,
                    headers=headers,
                    extensions=extensions,
                )
        except httpx.HTTPError as exc:
            raise NotifyError(f"webhook: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 300:
            # Server errors, throttling and timeouts may pass; other refusals will not.
            retryable = response.status_code >= 500 or response.status_code in (408, 429)
            raise NotifyError(f"webhook answered {response.status_code}", retryable=retryable)
