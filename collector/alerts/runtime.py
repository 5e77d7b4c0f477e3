"""Starts and stops everything alerting needs in one collector process: the evaluation engine
(fed by the writer's commit listener), the sweeper, the notification outbox drainer, the live
stream's LISTEN connection and the MQTT presence listener."""

from __future__ import annotations

from collector.alerts.engine import AlertEngine
from collector.alerts.presence import PresenceListener
from collector.alerts.stream import AlertStream
from collector.alerts.sweep import Sweeper
from collector.config import Settings
from collector.ingest.writer import GroupCommitWriter
from collector.notify.ha_sync import HomeAssistantSync
from collector.notify.outbox import OutboxDrainer


class AlertServices:
    def __init__(self, settings: Settings, *, secret_key: str | None = None) -> None:
        """``secret_key``: the server secret the notification targets' secrets are sealed with
        (the one the API uses)."""
        url = settings.database_url
        self.drainer = OutboxDrainer(
            url,
            poll_interval_s=settings.notify_poll_interval_s,
            max_attempts=settings.notify_max_attempts,
            backoff_base_s=settings.notify_backoff_base_s,
            backoff_max_s=settings.notify_backoff_max_s,
            secret_key=secret_key,
            allow_private_targets=settings.notify_allow_private_targets,
        )
        self.engine = AlertEngine(
            url,
            live_window_s=settings.alerts_live_window_s,
            rule_cache_s=settings.alerts_rule_cache_s,
            on_changes=self.drainer.wake,
            max_backlog_samples=settings.alerts_backlog_max_samples,
            home_evaluations_per_round=settings.alerts_home_evaluations_per_round,
        )
        self.sweeper = Sweeper(
            url,
            interval_s=settings.alerts_sweep_interval_s,
            live_window_s=settings.alerts_live_window_s,
            extra=[
                HomeAssistantSync(
                    interval_s=settings.homeassistant_sync_interval_s,
                    secret_key=secret_key,
                    allow_private_targets=settings.notify_allow_private_targets,
                )
            ],
            on_changes=self.drainer.wake,
        )
        self.stream = AlertStream(url)
        self.presence = PresenceListener(settings) if settings.mqtt_enabled else None

    def attach(self, writer: GroupCommitWriter) -> None:
        writer.add_commit_listener(self.engine.on_commit)

    def start(self) -> None:
        self.stream.start()
        self.engine.start()
        self.sweeper.start()
        self.drainer.start()
        if self.presence is not None:
            self.presence.start()

    def stop(self) -> None:
        if self.presence is not None:
            self.presence.stop()
        self.sweeper.stop()
        self.engine.stop()
        self.drainer.stop()
        self.stream.stop()
