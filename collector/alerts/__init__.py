"""Alerts: rules stored in the database, evaluated on every committed group of readings and by
periodic sweeps, with a lifecycle (pending → firing → acknowledged → resolved) kept in PostgreSQL
so that several collector instances share it. See docs/alerts.md."""
