"""Database access: connection URLs, schema migrations and TimescaleDB capability detection."""
