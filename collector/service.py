"""Run the collector: migrate, start the group-commit writer, MQTT, CoAP and the HTTP API in one
process. Several such processes can run side by side; they share the MQTT load through the shared
subscription and keep all state in TimescaleDB."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from collector.alerts.runtime import AlertServices
from collector.api.app import create_app
from collector.auth.tokens import signing_key
from collector.broker.backend import make_backend
from collector.config import Settings
from collector.db import migrate
from collector.db.connection import make_engine
from collector.ingest.coap import start_coap_server
from collector.ingest.mqtt import MqttIngest
from collector.ingest.pipeline import IngestPipeline
from collector.ingest.registry import DeviceRegistry
from collector.ingest.writer import GroupCommitWriter

log = logging.getLogger(__name__)


def build_writer(settings: Settings) -> GroupCommitWriter:
    return GroupCommitWriter(
        settings.database_url,
        max_readings=settings.ingest_batch_max_readings,
        max_wait_s=settings.ingest_max_wait_ms / 1000,
        queue_max_readings=settings.ingest_queue_max_readings,
        threads=settings.ingest_writer_threads,
        stall_s=settings.ingest_writer_stall_s,
        raw_max_bytes=settings.reject_raw_max_bytes,
    )


async def run(settings: Settings, *, db_wait_s: float = 30.0) -> None:
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    key = signing_key(secret, development=settings.auto_register_devices)
    capabilities = migrate.upgrade(settings, wait_s=db_wait_s)
    writer = build_writer(settings)
    writer.start()
    registry = DeviceRegistry(settings.database_url, auto_register=settings.auto_register_devices)
    registry.open()
    pipeline = IngestPipeline(settings, writer, registry)
    engine = make_engine(settings.database_url)
    broker_sync = make_backend(settings, engine)
    if broker_sync is not None:
        # Before MQTT connects: the collector's own broker account comes from the sync too.
        broker_sync.full_sync()
        broker_sync.start()
    mqtt = MqttIngest(settings, pipeline) if settings.mqtt_enabled else None
    alerting = AlertServices(settings, secret_key=key) if settings.alerts_enabled else None
    if alerting is not None:
        alerting.attach(writer)
        alerting.start()
    app = create_app(
        engine=engine,
        pipeline=pipeline,
        capabilities=capabilities,
        secret_key=key,
        broker_sync=broker_sync,
        writer=writer,
        mqtt=mqtt,
        registry=registry,
        settings=settings,
        alert_stream=alerting.stream if alerting is not None else None,
    )
    coap = None
    if settings.coap_enabled and not settings.coap_plaintext_allowed:
        log.warning(
            "CoAP not started: it would be plaintext (tokens readable on the network); set "
            "THERMOWATCH_COAP_PLAINTEXT_ALLOWED=true to accept that, or use MQTT over TLS"
        )
    elif settings.coap_enabled:
        coap = await start_coap_server(pipeline, settings.coap_host, settings.coap_port)
        log.warning(
            "CoAP listening on %s:%s in plaintext (THERMOWATCH_COAP_PLAINTEXT_ALLOWED)",
            settings.coap_host,
            settings.coap_port,
        )
    if mqtt is not None:
        mqtt.start()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_level="warning",
            access_log=False,
            # X-Forwarded-For names the client only when a configured proxy sent it (uvicorn
            # would otherwise trust any local peer, and login throttling keys on the address).
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=list(settings.trusted_proxies),
            # HTTPS served here when configured; otherwise a reverse proxy terminates TLS.
            ssl_certfile=settings.http_tls_cert_file,
            ssl_keyfile=settings.http_tls_key_file,
        )
    )
    try:
        await server.serve()
    finally:
        log.info("shutting down")
        if mqtt is not None:
            mqtt.stop()
        if broker_sync is not None:
            broker_sync.stop()
        if coap is not None:
            await coap.shutdown()
        # Commit what was accepted; anything not committed was not acknowledged either.
        await asyncio.to_thread(writer.stop)
        if alerting is not None:
            await asyncio.to_thread(alerting.stop)
        registry.close()
        app.state.login.close()
        engine.dispose()
