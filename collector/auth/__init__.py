"""Who is asking: people (passwords, access tokens, API keys) and devices (per-device secrets)."""
