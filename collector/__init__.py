"""The Thermowatch collector: ingest over MQTT, CoAP and HTTP into TimescaleDB, and the API.

Data flow: transports (``ingest/mqtt.py``, ``ingest/coap.py``, ``api/routes/ingest.py``) decode a
batch and hand it to the one pipeline (``ingest/pipeline.py``), which validates it
(``ingest/validate.py``), group-commits it (``ingest/writer.py``) and acknowledges after commit.
"""
