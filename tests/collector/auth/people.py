"""The stack the login and session tests share (the ``people_stack`` fixture)."""

from __future__ import annotations

from typing import Any

# Logins and sessions (test_login.py, test_sessions.py): 127.0.0.1 is a trusted proxy, so a
# test names any client address with X-Forwarded-For (a client bound to 127.0.0.2 is an
# untrusted peer); pauses start at 30 s, far longer than the tests take, so a refused attempt
# is refused for certain; a small hash cap and queue; alert streams re-check every 0.3 s.
PEOPLE_SETTINGS: dict[str, Any] = {
    "trusted_proxies": "127.0.0.1",
    "login_delay_base_s": 30,
    "login_free_failures": 5,
    "login_address_free_failures": 8,
    "login_max_concurrent_hashes": 2,
    "login_hash_queue": 2,
    "login_hash_wait_s": 30,
    "stream_recheck_s": 0.3,
}
