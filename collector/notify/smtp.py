"""E-mail over SMTP (optionally STARTTLS and login) with the standard library's ``smtplib``.

The connection goes to the address checked just before it (notify/destinations.py), while the
host name stays what the session speaks to: STARTTLS verifies the relay's certificate against
that name, so a password is only ever handed to the relay that was configured.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage

from pydantic import BaseModel, Field

from collector.notify.base import Delivery, Notifier, NotifyError, pinned_address


class SmtpConfig(BaseModel):
    host: str
    port: int = Field(default=587, gt=0, lt=65536)
    sender: str
    to: list[str] = Field(min_length=1)
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    timeout_s: float = Field(default=15.0, gt=0, le=120)


class _PinnedSMTP(smtplib.SMTP):
    """An SMTP session with ``host`` that connects to an address resolved (and checked) before.

    ``_get_socket`` is smtplib's own hook for how the socket is made (``SMTP_SSL`` overrides it
    the same way); everything else, the TLS server name included, still uses the host name."""

    def __init__(self, host: str, port: int, address: str, *, timeout: float) -> None:
        self._address = address
        super().__init__(host, port, timeout=timeout)  # connects, through _get_socket

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((self._address, port), timeout, self.source_address)


class SmtpNotifier(Notifier):
    kind = "smtp"
    Config = SmtpConfig
    secret_fields = ("password",)
    # Turning STARTTLS off would send the kept password in clear to the same host.
    destination_fields = ("host", "port", "starttls")

    def send(self, delivery: Delivery) -> None:
        cfg = SmtpConfig.model_validate(delivery.config)
        msg = EmailMessage()
        msg["Subject"] = f"[Thermowatch] {delivery.title}"
        msg["From"] = cfg.sender
        msg["To"] = ", ".join(cfg.to)
        msg["X-Thermowatch-Delivery"] = delivery.delivery_id
        msg.set_content(delivery.text + "\n\n-- \nThermowatch\n")
        address = pinned_address(cfg.host, cfg.port, delivery)
        try:
            with _PinnedSMTP(cfg.host, cfg.port, address, timeout=cfg.timeout_s) as smtp:
                if cfg.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.username:
                    smtp.login(cfg.username, cfg.password or "")
                smtp.send_message(msg)
        except smtplib.SMTPResponseException as exc:
            # 5xx answers (unknown mailbox, refused) will not change on retry.
            raise NotifyError(
                f"smtp: {exc.smtp_code} {exc.smtp_error!r}", retryable=exc.smtp_code < 500
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise NotifyError(f"smtp: {type(exc).__name__}: {exc}") from None
