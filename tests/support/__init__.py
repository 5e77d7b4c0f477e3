"""Helpers that start and control real services for the tests (PostgreSQL, Mosquitto, processes)."""
