"""Prometheus metrics of the collector (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BATCHES = Counter("thermowatch_batches_total", "Batches received, by transport", ["transport"])
READINGS_STORED = Counter(
    "thermowatch_readings_ingested_total", "Readings newly stored, by transport", ["transport"]
)
READINGS_DUPLICATE = Counter(
    "thermowatch_readings_duplicate_total",
    "Readings dropped because they were already stored (re-deliveries, retries)",
    ["transport"],
)
REJECTS = Counter("thermowatch_ingest_rejects_total", "Records rejected, by reason", ["reason"])
PROBE_FAULTS = Counter(
    "thermowatch_probe_faults_total", "Readings stored as probe faults, by fault", ["fault"]
)
COMMIT_READINGS = Histogram(
    "thermowatch_commit_readings",
    "Readings per group commit",
    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000),
)
COMMIT_SECONDS = Histogram(
    "thermowatch_commit_seconds",
    "Time to write and commit one group",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
QUEUE_READINGS = Gauge(
    "thermowatch_ingest_queue_readings", "Readings accepted but not yet committed"
)
DB_ERRORS = Counter(
    "thermowatch_database_errors_total", "Failed commits (retried until they succeed)"
)
HTTP_BODY_REFUSED = Counter(
    "thermowatch_http_body_refused_total",
    "HTTP requests stopped while reading because the body passed its size limit",
)
MQTT_INTAKE_REFUSED = Counter(
    "thermowatch_mqtt_refused_total",
    "MQTT messages acknowledged to the broker without being handled (intake full, or taking "
    "them failed); the device gets no ack and re-sends",
)
QUARANTINED = Counter(
    "thermowatch_ingest_quarantined_total",
    "Batches whose content the database refused, stored whole in ingest_rejects as "
    "'quarantined' instead of their records, by transport",
    ["transport"],
)
QUARANTINE_LOST = Counter(
    "thermowatch_ingest_quarantine_failed_total",
    "Quarantined batches whose ingest_rejects row could not be written either (logged); the "
    "sender was answered all the same",
)
LOGINS = Counter(
    "thermowatch_logins_total",
    "Password logins by outcome: ok, failed (wrong name or password), throttled (a pause after "
    "failures was running; the password was not checked), busy (no room to check it)",
    ["outcome"],
)
LOGIN_HASHES_RUNNING = Gauge(
    "thermowatch_login_hashes_running", "Password hashes being checked right now"
)
LOGIN_HASHES_PEAK = Gauge(
    "thermowatch_login_hashes_peak",
    "The most password hashes that ran at once since start (never above the configured cap)",
)
