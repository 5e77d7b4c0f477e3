"""Login under attack: how many password guesses does a spraying attacker get evaluated per hour,
and does the owner still get in, how fast?

A production-mode collector trusts 127.0.0.1 as a reverse proxy, so the attacker can speak from
a thousand addresses (X-Forwarded-For), as a botnet would. Attacker threads spray guesses over a
set of user names, one of them the owner's, as fast as the collector answers. Meanwhile:

- the owner logs in every ``OWNER_GAP_S`` from the address she used before (known to the
  throttle): success rate and latency, against her latency with nobody attacking (measured
  first, in the same run);
- a traveller (another attacked user) logs in from a new address each time, waiting
  ``Retry-After`` when told to: how long until she is in.

The throttle's pauses scale with time: the run uses them divided by ``--time-scale`` (default
10, a 60 s run covers 10 minutes of attack) and reports guesses per hour in real time,
extrapolated from the second half of the run (after the pauses reached their cap). Memory is the
collector's resident set, sampled, before and during the attack. Run with no arguments
(``python bench/login.py``): it writes the "login" section of ``docs/benchmarks.md`` and prints
one JSON line last on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the repository importable (the venv installs only the product).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.common import (
    Collector,
    TemporaryDatabase,
    create_admin_key,
    free_port,
    log,
    machine_description,
    percentile,
    replace_doc_section,
    temporary_workdir,
)

SPRAYED_USERS = 20
ATTACKER_THREADS = 24
ATTACKER_ADDRESSES = 1000
OWNER_GAP_S = 0.5
BASELINE_LOGINS = 10
OWNER_HOME = "192.0.2.10"
# The collector's defaults (collector/config.py), divided by the time scale for the run.
DELAY_BASE_S, DELAY_MAX_S, FORGET_S = 1.0, 60.0, 900.0


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Record:
    """What one side of the run saw: (time since start, status, latency s) per login."""

    results: list[tuple[float, int, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, at: float, status: int, latency_s: float) -> None:
        with self.lock:
            self.results.append((at, status, latency_s))


def _login(
    http: httpx.Client, username: str, password: str, address: str
) -> tuple[int, float, httpx.Response | None]:
    started = time.monotonic()
    try:
        resp = http.post(
            "/api/v1/auth/login",
            json={"username": username, "password": password},
            headers={"X-Forwarded-For": address},
        )
    except httpx.HTTPError:
        return 0, time.monotonic() - started, None
    return resp.status_code, time.monotonic() - started, resp


def _make_users(collector: Collector, admin_key: str) -> dict[str, str]:
    passwords = {f"user{i:02d}": secrets.token_urlsafe(16) for i in range(SPRAYED_USERS)}
    headers = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=collector.url, headers=headers, timeout=30) as http:
        for name, password in passwords.items():
            resp = http.post(
                "/api/v1/users", json={"username": name, "password": password, "role": "homeowner"}
            )
            resp.raise_for_status()
    return passwords


def run(duration_s: float, time_scale: float) -> dict[str, Any]:
    with (
        temporary_workdir("tw-bench-login-") as tmp,
        TemporaryDatabase() as db,
        Collector(
            db.url,
            free_port(),
            Path(tmp),
            mqtt_enabled=False,
            coap_enabled=False,
            alerts_enabled=False,
            auto_register_devices=False,
            secret_key=secrets.token_urlsafe(48),
            trusted_proxies="127.0.0.1",
            login_delay_base_s=DELAY_BASE_S / time_scale,
            login_delay_max_s=DELAY_MAX_S / time_scale,
            login_forget_s=FORGET_S / time_scale,
        ) as collector,
    ):
        admin_key = create_admin_key(collector.env)
        passwords = _make_users(collector, admin_key)
        owner, traveller = "user00", "user01"
        with httpx.Client(base_url=collector.url, timeout=60) as http:
            status, _, _ = _login(http, owner, passwords[owner], OWNER_HOME)
            assert status == 200, status
            # The reference: the owner's latency with nobody attacking, in the same run.
            quiet: list[float] = []
            for _ in range(BASELINE_LOGINS):
                status, latency, _ = _login(http, owner, passwords[owner], OWNER_HOME)
                assert status == 200, status
                quiet.append(latency)
                time.sleep(OWNER_GAP_S)
        rss_before = _rss_mb(collector.pid)
        log(f"collector ready, {rss_before:.0f} MB; attacking for {duration_s:.0f} s")

        stop = threading.Event()
        start = time.monotonic()
        attack, owner_rec = Record(), Record()
        travel_s: list[float] = []
        rss_peak = [rss_before]
        names = itertools.cycle(sorted(passwords))
        addresses = itertools.cycle(
            f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(ATTACKER_ADDRESSES)
        )
        pick = threading.Lock()

        def attacker() -> None:
            with httpx.Client(base_url=collector.url, timeout=60) as http:
                while not stop.is_set():
                    with pick:
                        name, address = next(names), next(addresses)
                    status, latency, _ = _login(http, name, secrets.token_urlsafe(9), address)
                    attack.add(time.monotonic() - start, status, latency)

        def owner_loop() -> None:
            with httpx.Client(base_url=collector.url, timeout=60) as http:
                while not stop.wait(OWNER_GAP_S):
                    status, latency, _ = _login(http, owner, passwords[owner], OWNER_HOME)
                    owner_rec.add(time.monotonic() - start, status, latency)

        def traveller_loop() -> None:
            # Half-way in, when the pauses are at their cap: from a new address each time,
            # following Retry-After like a well-behaved client.
            if stop.wait(duration_s / 2):
                return
            with httpx.Client(base_url=collector.url, timeout=60) as http:
                while not stop.is_set():
                    began, address = time.monotonic(), f"198.51.100.{len(travel_s) % 250 + 1}"
                    while not stop.is_set():
                        status, _, resp = _login(http, traveller, passwords[traveller], address)
                        if status == 200:
                            travel_s.append(time.monotonic() - began)
                            break
                        wait = float(resp.headers.get("Retry-After", 1)) if resp else 1.0
                        if stop.wait(min(wait, DELAY_MAX_S / time_scale)):
                            return
                    stop.wait(1.0)

        def sampler() -> None:
            while not stop.wait(0.2):
                rss_peak[0] = max(rss_peak[0], _rss_mb(collector.pid))

        threads = [threading.Thread(target=attacker) for _ in range(ATTACKER_THREADS)]
        threads += [threading.Thread(target=f) for f in (owner_loop, traveller_loop, sampler)]
        for t in threads:
            t.start()
        stop.wait(duration_s)
        stop.set()
        for t in threads:
            t.join()
        metrics = collector.metrics()
        machine = machine_description(db.url)

    codes = Counter(status for _, status, _ in attack.results)
    half = duration_s / 2
    steady = sum(1 for at, status, _ in attack.results if at >= half and status == 401)
    per_hour = steady / (duration_s - half) * 3600 / time_scale
    owner_ok = [lat for _, status, lat in owner_rec.results if status == 200]
    result = {
        "benchmark": "login",
        "duration_s": duration_s,
        "time_scale": time_scale,
        "sprayed_users": SPRAYED_USERS,
        "attacker_addresses": ATTACKER_ADDRESSES,
        "attacker_threads": ATTACKER_THREADS,
        "attack_requests": len(attack.results),
        "attack_answers": {str(k): v for k, v in sorted(codes.items())},
        "attack_evaluated": codes[401],
        "attack_guesses_per_hour": round(per_hour),
        "attack_guesses_per_hour_per_user": round(per_hour / SPRAYED_USERS, 1),
        "owner_quiet_latency_p50_ms": round(percentile(quiet, 50) * 1000, 1),
        "owner_logins": len(owner_rec.results),
        "owner_success_rate": round(len(owner_ok) / max(1, len(owner_rec.results)), 4),
        "owner_latency_p50_ms": round(percentile(owner_ok, 50) * 1000, 1) if owner_ok else None,
        "owner_latency_p99_ms": round(percentile(owner_ok, 99) * 1000, 1) if owner_ok else None,
        "traveller_logins": len(travel_s),
        "traveller_wait_p50_s": (
            round(percentile(travel_s, 50) * time_scale, 1) if travel_s else None
        ),
        "traveller_wait_max_s": round(max(travel_s) * time_scale, 1) if travel_s else None,
        "login_hashes_peak": int(metrics.get(("thermowatch_login_hashes_peak", ()), 0)),
        "collector_rss_before_mb": round(rss_before),
        "collector_rss_peak_mb": round(rss_peak[0]),
        "machine": machine,
    }
    _write_doc(result)
    return result


def _write_doc(r: dict[str, Any]) -> None:
    machine = ", ".join(f"{k}: {v}" for k, v in r["machine"].items())
    answers = ", ".join(f"{k}: {v}" for k, v in r["attack_answers"].items())
    rows = [
        ("attack requests (answers)", f"{r['attack_requests']} ({answers})"),
        ("guesses evaluated per hour, all names", r["attack_guesses_per_hour"]),
        ("guesses evaluated per hour, per name", r["attack_guesses_per_hour_per_user"]),
        (
            "owner at her usual address: success",
            f"{r['owner_success_rate'] * 100:.1f} % of {r['owner_logins']}",
        ),
        (
            "owner latency p50 / p99 (p50 with nobody attacking)",
            f"{r['owner_latency_p50_ms']} / {r['owner_latency_p99_ms']} ms "
            f"({r['owner_quiet_latency_p50_ms']} ms)",
        ),
        (
            "traveller from new addresses: wait until in, p50 / max (real time)",
            f"{r['traveller_wait_p50_s']} / {r['traveller_wait_max_s']} s "
            f"({r['traveller_logins']} logins)"
            if r["traveller_logins"]
            else "not in during the run (the flood held the hash queue)",
        ),
        ("password hashes at once, peak (cap)", f"{r['login_hashes_peak']} (2)"),
        (
            "collector RSS before / peak",
            f"{r['collector_rss_before_mb']} / {r['collector_rss_peak_mb']} MB",
        ),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    replace_doc_section(
        "login",
        f"""
## Login under attack

`python bench/login.py`: {r["attacker_threads"]} attacker threads spray guesses over
{r["sprayed_users"]} user names from {r["attacker_addresses"]} addresses (X-Forwarded-For
through a trusted proxy) as fast as the collector answers, for {r["duration_s"]:.0f} s with the
throttle's pauses divided by {r["time_scale"]:.0f} (so the run covers
{r["duration_s"] * r["time_scale"] / 60:.0f} minutes of attack). Guesses per hour are in real
time, from the second half of the run. The owner logs in every {OWNER_GAP_S} s from the address
she used before; the traveller, from a new address each time, follows `Retry-After`.

| measure | value |
|---|---|
{table}

Machine: {machine}.
""",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--time-scale", type=float, default=10.0)
    args = parser.parse_args()
    result = run(args.duration_s, args.time_scale)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
