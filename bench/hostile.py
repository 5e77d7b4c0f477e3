"""Hostile-device benchmark: while one device floods the collector with one class of bad input,
how quickly is another device's batch still stored and acknowledged?

A canary device publishes a small batch every ``CANARY_GAP_S`` over MQTT and times publish →
application ack (``tw/v1/canary/ack``, sent after the commit). The run first measures the canary
alone (the reference, in the same run), then under a flood of each class from one attacking
device. Run with no arguments (``python bench/hostile.py``): it starts its own TimescaleDB
database, Mosquitto and collector, writes the "hostile" section of ``docs/benchmarks.md`` and
prints one JSON line last on stdout (progress goes to stderr).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the repository importable (the venv installs only the product).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cbor2
import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    Collector,
    PrivateBroker,
    TemporaryDatabase,
    log,
    machine_description,
    percentile,
    replace_doc_section,
    temporary_workdir,
)
from shared import protocol as p

PHASE_S = 12.0
CANARY_GAP_S = 0.05
ATTACK_RATE_HZ = 400  # messages per second from the attacking device
GOAL_P99_MS = 1000.0
CANARY = "canary"
ATTACKER = "attacker"


def _now_t0() -> int:
    return int(time.time()) - 1


def _json_batch(**overrides: Any) -> bytes:
    batch: dict[str, Any] = {
        "v": 1,
        "dev": ATTACKER,
        "seq": 1,
        "boot": "b",
        "t0": _now_t0(),
        "r": [["s", 0, 4.5, 0]],
    }
    batch.update(overrides)
    return json.dumps(batch).encode()


# Each class: a function giving the next payload (called with a running number) and a body
# format. They are the classes the hostile-input suite covers, as a device would send them.
def _attacks() -> dict[str, Callable[[int], bytes]]:
    deep = b"[" * 200_000 + b"]" * 200_000
    return {
        "refused_cbor_with_nul_bytes": lambda n: cbor2.dumps({"v": 2, "dev": ATTACKER, "seq": n}),
        "seq_beyond_int64": lambda n: _json_batch(seq=2**63 + n),
        "event_time_beyond_timestamptz": lambda n: _json_batch(
            seq=n, t0=10**13, r=[], ev=[["s", 0, "threshold_high", 1.0, 2.0]]
        ),
        "unhashable_sensor_id": lambda n: _json_batch(
            seq=n, r=[[["x"], 0, 1.0, 0], ["s", 0, 1, 0]]
        ),
        "integer_of_400_digits": lambda n: _json_batch(seq=n).replace(b"4.5", b"9" * 400),
        "integer_of_5000_digits": lambda n: _json_batch(seq=n).replace(b"4.5", b"9" * 5000),
        "json_nested_200k_deep": lambda n: deep,
        "cbor_bignum_seq": lambda n: cbor2.dumps(
            {"v": 1, "dev": ATTACKER, "seq": 2**70, "boot": "b", "t0": _now_t0(), "r": []}
        ),
        "speaks_for_the_canary": lambda n: _json_batch(dev=CANARY, seq=10**9 + n),
        "same_time_two_values": lambda n: _json_batch(
            seq=n, r=[["s", n % 1000, 1.0, 0], ["s", n % 1000, 2.0, 0]]
        ),
    }


class Canary:
    """Publishes a batch every CANARY_GAP_S and records publish → ack latency per seq."""

    def __init__(self, port: int) -> None:
        self.sent: dict[int, float] = {}
        self.acked: dict[int, float] = {}
        self.lock = threading.Lock()
        self.seq = 0
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=CANARY,
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_ack
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(p.topic(CANARY, p.T_ACK), qos=1)
        self.client.loop_start()

    def _on_ack(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        seq = json.loads(msg.payload).get("seq")
        with self.lock:
            if isinstance(seq, int) and seq in self.sent and seq not in self.acked:
                self.acked[seq] = time.monotonic()

    def run_for(self, seconds: float) -> tuple[int, int]:
        """Publish for ``seconds``; the first and last seq of this stretch."""
        first = self.seq + 1
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.seq += 1
            body = p.encode_batch(CANARY, self.seq, "c", _now_t0(), [("s", 0, 4.0, 0)])
            with self.lock:
                self.sent[self.seq] = time.monotonic()
            self.client.publish(p.topic(CANARY, p.T_READINGS), body, qos=1)
            time.sleep(CANARY_GAP_S)
        return first, self.seq

    def latencies_ms(self, first: int, last: int, grace_s: float = 5.0) -> tuple[list[float], int]:
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            with self.lock:
                missing = [s for s in range(first, last + 1) if s not in self.acked]
            if not missing:
                break
            time.sleep(0.1)
        with self.lock:
            done = [
                (self.acked[s] - self.sent[s]) * 1000
                for s in range(first, last + 1)
                if s in self.acked
            ]
        return done, (last - first + 1) - len(done)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# Attackers run in processes of their own, so that generating and sending their load does not
# take the GIL from the canary's clock.
_FORK = mp.get_context("fork")


class Attacker(_FORK.Process):  # type: ignore[name-defined]
    """One device sending one class of bad input at ATTACK_RATE_HZ until stopped."""

    def __init__(self, port: int, make: Callable[[int], bytes]) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.make = make
        self.stop = _FORK.Event()
        self._sent = _FORK.Value("l", 0)

    @property
    def sent(self) -> int:
        return int(self._sent.value)

    def run(self) -> None:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=ATTACKER,
            protocol=mqtt.MQTTv5,
        )
        client.max_inflight_messages_set(1000)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        started, n = time.monotonic(), 0
        while not self.stop.is_set():
            n += 1
            client.publish(p.topic(ATTACKER, p.T_READINGS), self.make(n), qos=1)
            self._sent.value = n
            time.sleep(max(0.0, started + n / ATTACK_RATE_HZ - time.monotonic()))
        client.disconnect()
        client.loop_stop()


class HttpAttacker(_FORK.Process):  # type: ignore[name-defined]
    """One device posting 64 MiB bodies to HTTP ingest from a few connections at once."""

    BODY_BYTES = 64 * 1024 * 1024
    CONNECTIONS = 4

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url + p.HTTP_INGEST_PATH
        self.stop = _FORK.Event()
        self._sent = _FORK.Value("l", 0)

    @property
    def sent(self) -> int:
        return int(self._sent.value)

    def _one(self, body: bytes) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                with self._sent.get_lock():
                    self._sent.value += 1
                # The collector stops reading past its limit and closes: an error is expected.
                with contextlib.suppress(httpx.HTTPError):
                    http.post(self.url, content=body)

    def run(self) -> None:
        body = b"[" * self.BODY_BYTES
        workers = [
            threading.Thread(target=self._one, args=(body,), daemon=True)
            for _ in range(self.CONNECTIONS)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


class ReadinessProbe(threading.Thread):
    """Samples /readyz every 0.25 s; the share of samples that said ready."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.samples: list[bool] = []

    def run(self) -> None:
        with httpx.Client(timeout=2) as http:
            while not self.stop.wait(0.25):
                try:
                    self.samples.append(http.get(self.url + "/readyz").status_code == 200)
                except httpx.HTTPError:
                    self.samples.append(False)

    @property
    def ready_share(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else 0.0


def _peak_rss_mb(pid: int) -> float:
    """The collector's peak resident memory so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _phase(
    name: str,
    canary: Canary,
    collector: Collector,
    make: Callable[[int], bytes] | None,
    port: int,
    *,
    http: bool = False,
) -> dict[str, Any]:
    attacker: Attacker | HttpAttacker | None = None
    if http:
        attacker = HttpAttacker(collector.url)
    elif make is not None:
        attacker = Attacker(port, make)
    probe = ReadinessProbe(collector.url)
    probe.start()
    if attacker is not None:
        attacker.start()
    first, last = canary.run_for(PHASE_S)
    if attacker is not None:
        attacker.stop.set()
        attacker.join(5)
    lat, lost = canary.latencies_ms(first, last)
    probe.stop.set()
    probe.join(2)
    result = {
        "class": name,
        "attack_messages": attacker.sent if attacker is not None else 0,
        "canary_batches": last - first + 1,
        "canary_unacked": lost,
        "canary_ack_p50_ms": round(percentile(lat, 50), 1) if lat else None,
        "canary_ack_p99_ms": round(percentile(lat, 99), 1) if lat else None,
        "collector_ready_share": round(probe.ready_share, 3),
        "collector_alive": collector.proc is not None and collector.proc.poll() is None,
        "collector_peak_rss_mb": round(_peak_rss_mb(collector.pid), 1),
    }
    log(json.dumps(result))
    return result


def main() -> dict[str, Any]:
    with (
        temporary_workdir("tw-bench-hostile-") as tmp,
        PrivateBroker(Path(tmp)) as broker,
        TemporaryDatabase() as db,
        Collector(db.url, broker.port, Path(tmp), auto_register_devices=True) as collector,
    ):
        canary = Canary(broker.port)
        try:
            phases = [_phase("none (reference)", canary, collector, None, broker.port)]
            for name, make in _attacks().items():
                phases.append(_phase(name, canary, collector, make, broker.port))
            phases.append(
                _phase("http_64_mib_bodies", canary, collector, None, broker.port, http=True)
            )
        finally:
            canary.close()
        machine = machine_description(db.url)
        rejects = collector.metrics()
    reasons = {
        dict(labels).get("reason", ""): int(v)
        for (name, labels), v in rejects.items()
        if name == "thermowatch_ingest_rejects_total"
    }
    attacked = [ph for ph in phases[1:]]
    worst = max((ph["canary_ack_p99_ms"] or float("inf") for ph in attacked), default=0.0)
    result = {
        "benchmark": "hostile",
        "attack_rate_hz": ATTACK_RATE_HZ,
        "phase_s": PHASE_S,
        "reference_p99_ms": phases[0]["canary_ack_p99_ms"],
        "worst_attacked_p99_ms": worst,
        "goal_p99_ms": GOAL_P99_MS,
        "goal_met": worst <= GOAL_P99_MS and all(ph["canary_unacked"] == 0 for ph in attacked),
        "phases": phases,
        "reject_reasons": reasons,
        "machine": machine,
    }
    _write_doc(result)
    return result


def _write_doc(result: dict[str, Any]) -> None:
    rows = "\n".join(
        f"| {ph['class']} | {ph['attack_messages']} | {ph['canary_ack_p50_ms']} | "
        f"{ph['canary_ack_p99_ms']} | {ph['canary_unacked']} | {ph['collector_ready_share']} | "
        f"{ph['collector_peak_rss_mb']} |"
        for ph in result["phases"]
    )
    machine = ", ".join(f"{k}: {v}" for k, v in result["machine"].items())
    replace_doc_section(
        "hostile",
        f"""
## Hostile devices

`python bench/hostile.py`: one device floods the collector over MQTT at
{result["attack_rate_hz"]} messages/s with one class of bad input for {result["phase_s"]:.0f} s
while a canary device publishes a batch every {CANARY_GAP_S * 1000:.0f} ms and times publish →
application ack. The first row is the canary alone, measured in the same run. Goal: canary p99
under {result["goal_p99_ms"]:.0f} ms and every canary batch acknowledged, under every class
(goal met: **{"yes" if result["goal_met"] else "no"}**).

| attack class | attack msgs | canary p50 ms | canary p99 ms | unacked | ready share | peak RSS MB |
|---|---|---|---|---|---|---|
{rows}

Machine: {machine}.
""",
    )


if __name__ == "__main__":
    print(json.dumps(main()))
