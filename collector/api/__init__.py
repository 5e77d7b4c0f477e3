"""The collector's HTTP API (FastAPI): thin routes over the database and the ingest pipeline."""
