"""Ingest: every transport hands raw payloads to one pipeline that validates, group-commits and
acknowledges only after commit."""
