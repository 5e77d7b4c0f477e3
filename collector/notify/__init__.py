"""Notifications: one :class:`~collector.notify.base.Notifier` interface, one module per channel
(webhook, e-mail, MQTT, Home Assistant), chosen by name, and the outbox drainer that delivers
queued alert notifications with retries and exponential backoff."""
