"""E-mail over SMTP (optionally STARTTLS and login) with the standard library's ``smtplib``."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from pydantic import BaseModel, Field

from collector.notify.base import Delivery, Notifier, NotifyError


class SmtpConfig(BaseModel):
    host: str
    port: int = Field(default=587, gt=0, lt=65536)
    sender: str
    to: list[str] = Field(min_length=1)
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    timeout_s: float = Field(default=15.0, gt=0, le=120)


class SmtpNotifier(Notifier):
    kind = "smtp"
    Config = SmtpConfig

    def send(self, delivery: Delivery) -> None:
        cfg = SmtpConfig.model_validate(delivery.config)
        msg = EmailMessage()
        msg["Subject"] = f"[Thermowatch] {delivery.title}"
        msg["From"] = cfg.sender
        msg["To"] = ", ".join(cfg.to)
        msg["X-Thermowatch-Delivery"] = delivery.delivery_id
        msg.set_content(delivery.text + "\n\n-- \nThermowatch\n")
        try:
            with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
                if cfg.starttls:
                    smtp.starttls()
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
